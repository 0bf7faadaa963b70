import type {CkanIni} from '../site/ckan-ini.js'
import {activeEnvOverrides, effectiveSetting, jwtSecretFallbackKey, resolveJwtSecret} from '../site/ckan-settings.js'
import {credentialKind} from '../site/credential.js'
import type {AuditFinding} from './audit-finding.js'
import type {CkanVersion} from '../site/ckan-version.js'

export type ConfigFindingsOptions = {
  env: NodeJS.ProcessEnv
  /** The site's ckan.ini; without it only plugin- and environment-based checks run. */
  ini?: CkanIni
  /** Enabled plugins: ckan.plugins from the ini, or status_show's extensions. */
  plugins: readonly string[]
  /** The detected version (decides the JWT secret fallback); 2.9 when unknown. */
  version?: CkanVersion
}

/** A service that needs its own API token on CKAN 2.10+ (ckan-facts §6, ckan-ecosystem §2.1). */
type ServiceTokenRule = {
  /** Settings read in order; the first one set wins. */
  keys: string[]
  plugin: string
  severity: 'blocker' | 'warning'
  /** When this setting is false the service sends no credential at all. */
  unlessFalse?: string
}

const SERVICE_TOKEN_RULES: readonly ServiceTokenRule[] = [
  {keys: ['ckan.datapusher.api_token'], plugin: 'datapusher', severity: 'blocker'},
  {
    keys: ['ckanext.datapusher_plus.api_token', 'ckan.datapusher.api_token'],
    plugin: 'datapusher_plus',
    severity: 'blocker',
  },
  {keys: ['ckanext.xloader.api_token'], plugin: 'xloader', severity: 'blocker'},
  {
    keys: ['ckanext.validation.pass_auth_header_value'],
    plugin: 'validation',
    severity: 'warning',
    unlessFalse: 'ckanext.validation.pass_auth_header',
  },
]

const JWT_KEYS = ['api_token.jwt.encode.secret', 'api_token.jwt.decode.secret'] as const
const UUID = /^[\da-f]{8}-[\da-f]{4}-[\da-f]{4}-[\da-f]{4}-[\da-f]{12}$/i
/** Placeholders seen in the wild (xloader's NOT_SET default, ckan-docker's xxx). */
const PLACEHOLDERS = new Set(['', 'NOT_SET', 'xxx', 'CHANGE_ME'])

/**
 * Findings about ckan.ini and the environment CKAN runs with: JWT secrets, header names, token
 * expiry, service token settings, default API keys, cookie auth, environment overrides. Values of
 * secrets are compared, never shown: findings name settings, not what they hold.
 */
export async function collectConfigFindings(options: ConfigFindingsOptions): Promise<AuditFinding[]> {
  const {env, ini, plugins} = options
  const version = options.version ?? '2.9'
  const findings: AuditFinding[] = []
  const setting = (key: string) => effectiveSetting(ini, key, env)

  if (ini) {
    findings.push(...(await jwtFindings(ini, version, env)))
    if (ini.duplicates.length > 0) {
      findings.push({
        count: ini.duplicates.length,
        fix: 'Keep one line per setting in [app:main]: CKAN refuses to start with a setting written twice.',
        id: 'ini-duplicate-keys',
        sample: ini.duplicates.map(
          (duplicate) => `${duplicate.key} (${duplicate.file} lines ${duplicate.lines.join(', ')})`,
        ),
        severity: 'blocker',
        title: `${ini.duplicates.length} settings are written more than once in [app:main]`,
      })
    }
    const header = setting('apikey_header_name')
    if (header.value !== undefined && header.value !== '') {
      findings.push({
        count: 1,
        details: {value: header.value},
        // ckan-2.10.10:ckan/views/__init__.py L125-147 (this header, then Authorization);
        // ckan-2.11.5:ckan/views/__init__.py L125-137 and config_declaration.yaml L402-409 (one header:
        // apitoken_header_name, whose legacy key apikey_header_name fills it when unset).
        fix: `2.9 and 2.10 read ${header.value} first and fall back to Authorization; 2.11 reads one header only, apitoken_header_name, and while that is unset it takes this value (apikey_header_name is its legacy key), so on 2.11 only ${header.value} works and clients sending Authorization are refused. Decide the header: set apitoken_header_name to it (e.g. Authorization, what XLoader sends) and remove apikey_header_name, and have clients send their token there.`,
        id: 'apikey-header-name-set',
        sample: ['apikey_header_name'],
        severity: 'warning',
        title: `apikey_header_name is set to ${header.value}`,
      })
    }
    if (isTrue(setting('ckan.auth.create_default_api_keys').value)) findings.push(defaultApiKeysFinding(version))
    // The setting exists from 2.10 on (ckan-2.10.10:ckan/config/config_declaration.yaml:L642-649);
    // 2.9 has no such switch.
    if (version !== '2.9' && !isFalse(setting('ckan.auth.enable_cookie_auth_in_api').value)) {
      findings.push({
        count: 1,
        fix: 'Fine during the move; once every client sends a token, set ckan.auth.enable_cookie_auth_in_api = false (CKAN 2.10+).',
        id: 'cookie-auth-in-api',
        sample: ['ckan.auth.enable_cookie_auth_in_api'],
        severity: 'info',
        title: 'The API still accepts browser cookies (ckan.auth.enable_cookie_auth_in_api is not false)',
      })
    }
    findings.push(...serviceTokenFindings(plugins, setting))
  } else {
    findings.push({
      count: 1,
      fix: "Run the audit again with --ckan-ini pointing at the site's ckan.ini to check JWT secrets, header names and service tokens.",
      id: 'config-not-checked',
      sample: [],
      severity: 'info',
      title: 'No --ckan-ini given: the configuration was not checked',
    })
  }

  if (plugins.includes('expire_api_token')) {
    const lifetime = setting('expire_api_token.default_lifetime').value
    findings.push({
      count: 1,
      details: lifetime === undefined ? {} : {defaultLifetime: lifetime},
      fix: 'Decide how long the new tokens live: every api_token_create must send expires_in and unit, or CKAN answers 409.',
      id: 'expire-api-token-enabled',
      sample: ['expire_api_token'],
      severity: 'warning',
      title: 'The expire_api_token plugin is enabled: tokens must be created with expires_in and unit',
    })
  } else if (ini || plugins.length > 0) {
    findings.push({
      count: 1,
      fix: 'Consider adding expire_api_token to ckan.plugins (with expire_api_token.default_lifetime) so tokens do not live forever.',
      id: 'tokens-never-expire',
      sample: ['expire_api_token'],
      severity: 'info',
      title: 'API tokens never expire (the expire_api_token plugin is not enabled)',
    })
  }

  const overrides = activeEnvOverrides(env)
  if (overrides.length > 0) {
    findings.push({
      count: overrides.length,
      fix: "Check that CKAN's own processes (web, workers) run with these same variables: they beat ckan.ini, and this audit used them.",
      id: 'env-overrides',
      sample: overrides.map((override) => `${override.variable} → ${override.key}`),
      severity: 'info',
      title: `${overrides.length} environment variables override ckan.ini settings`,
    })
  }
  return findings
}

async function jwtFindings(ini: CkanIni, version: CkanVersion, env: NodeJS.ProcessEnv): Promise<AuditFinding[]> {
  const findings: AuditFinding[] = []
  const values = JWT_KEYS.map((key) => ({key, setting: effectiveSetting(ini, key, env)}))
  const unset = values.filter(({setting}) => !setting.value)
  // The fallback when a secret is unset: beaker.session.secret on 2.9/2.10, SECRET_KEY on 2.11
  // (_config_secret_fallback in ckan/lib/api_token.py at each tag).
  const fallback = jwtSecretFallbackKey(version)
  if (unset.length > 0) {
    const names = unset.map(({key}) => key).join(' and ')
    findings.push({
      count: unset.length,
      fix:
        fallback === 'SECRET_KEY'
          ? 'Set api_token.jwt.encode.secret and api_token.jwt.decode.secret to string:<the value of SECRET_KEY>, so a new SECRET_KEY (it also signs sessions and CSRF tokens) does not break every token.'
          : 'Set api_token.jwt.encode.secret and api_token.jwt.decode.secret to string:<the value of beaker.session.secret> before issuing tokens, so tokens survive CKAN 2.11.',
      id: 'jwt-secrets-not-pinned',
      sample: unset.map(({key}) => key),
      severity: 'blocker',
      title:
        fallback === 'SECRET_KEY'
          ? `${names} not set: tokens are signed with SECRET_KEY, so changing SECRET_KEY breaks every token`
          : `${names} not set: tokens are signed with ${fallback} now and with SECRET_KEY on 2.11, which breaks every token`,
    })
  }
  const withoutPrefix = values.filter(({setting}) => setting.value && !/^(string|file):/.test(setting.value))
  if (withoutPrefix.length > 0) {
    findings.push({
      count: withoutPrefix.length,
      fix: 'Write the secret as string:<secret> (or file:<path>): without the prefix CKAN fails on the first token it sees.',
      id: 'jwt-secret-without-prefix',
      sample: withoutPrefix.map(({key}) => key),
      severity: 'blocker',
      title: `${withoutPrefix.map(({key}) => key).join(' and ')} has no string: or file: prefix`,
    })
  }
  const interpolated = values.filter(
    ({key, setting}) => setting.source === 'ini' && (ini.raw(key) ?? '').includes('%('),
  )
  if (interpolated.length > 0) {
    // What the %(...)s names: 2.10's generator writes %(beaker.session.secret)s, 2.11's %(SECRET_KEY)s
    // (config_declaration.yaml placeholders; ckan-reference/ckan-<version>-generated.ini).
    const sources = [
      ...new Set(
        interpolated.flatMap(({key}) => [...(ini.raw(key) ?? '').matchAll(/%\(([^)]+)\)s/g)].map((m) => m[1]!)),
      ),
    ]
    const fix = sources.every((source) => source === 'SECRET_KEY')
      ? 'Write the secret itself (string:<secret>) instead of %(SECRET_KEY)s: the tokens follow SECRET_KEY, so a new SECRET_KEY (it also signs sessions and CSRF tokens) breaks every token.'
      : sources.every((source) => source.toLowerCase() === 'beaker.session.secret')
        ? 'Write the secret itself (string:<secret>) instead of %(beaker.session.secret)s: 2.11 drops Beaker, and removing or changing beaker.session.secret would change or break the secret.'
        : `Write the secret itself (string:<secret>) instead of %(...)s: changing or removing ${sources.join(' or ')} would change or break the secret.`
    findings.push({
      count: interpolated.length,
      details: {from: sources.join(', ')},
      fix,
      id: 'jwt-secret-interpolated',
      sample: interpolated.map(({key}) => key),
      severity: 'warning',
      title: `${interpolated.map(({key}) => key).join(' and ')} takes its value from another setting through %(...)s`,
    })
  }
  if (withoutPrefix.length > 0) return findings
  try {
    const [encode, decode] = await Promise.all([
      resolveJwtSecret(ini, version, 'encode', env),
      resolveJwtSecret(ini, version, 'decode', env),
    ])
    if (encode.secret.reveal() !== decode.secret.reveal()) {
      findings.push({
        count: 2,
        details: {decodeFrom: decode.from, encodeFrom: encode.from},
        fix: 'Give api_token.jwt.encode.secret and api_token.jwt.decode.secret the same value: with HS256 CKAN cannot verify the tokens it signs otherwise.',
        id: 'jwt-secrets-differ',
        sample: [...JWT_KEYS],
        severity: 'blocker',
        title: `The encode secret (from ${encode.from}) and the decode secret (from ${decode.from}) differ`,
      })
    }
  } catch (error) {
    findings.push({
      count: 1,
      fix: `Set api_token.jwt.encode.secret and api_token.jwt.decode.secret (string:<secret>), or make the file they name readable: CKAN cannot sign tokens otherwise.`,
      id: 'jwt-secret-unavailable',
      sample: [...JWT_KEYS],
      severity: 'blocker',
      title: `The JWT secret cannot be determined: ${error instanceof Error ? error.message : String(error)}`,
    })
  }
  return findings
}

function serviceTokenFindings(
  plugins: readonly string[],
  setting: (key: string) => {value: string | undefined},
): AuditFinding[] {
  const missing: Record<'blocker' | 'warning', string[]> = {blocker: [], warning: []}
  const legacy: string[] = []
  for (const rule of SERVICE_TOKEN_RULES) {
    if (!plugins.includes(rule.plugin)) continue
    if (rule.unlessFalse && isFalse(setting(rule.unlessFalse).value)) continue
    const found = rule.keys
      .map((key) => ({key, value: setting(key).value?.trim()}))
      .find(({value}) => value !== undefined && !PLACEHOLDERS.has(value))
    if (!found) missing[rule.severity].push(`${rule.plugin} (${rule.keys[0]})`)
    else if (UUID.test(found.value!)) legacy.push(`${rule.plugin} (${found.key})`)
  }
  const findings: AuditFinding[] = []
  if (missing.blocker.length > 0) {
    findings.push({
      count: missing.blocker.length,
      fix: 'Issue a token for a service account (ckan-migrate issue-tokens) and write it into the setting named (ckan-migrate rewrite-config): 2.10 refuses to start DataPusher without it, and XLoader jobs fail.',
      id: 'service-token-missing',
      sample: missing.blocker,
      severity: 'blocker',
      title: `${missing.blocker.length} enabled services have no API token setting`,
    })
  }
  if (missing.warning.length > 0) {
    findings.push({
      count: missing.warning.length,
      fix: 'Set ckanext.validation.pass_auth_header_value to an API token: its default, the site user key, stops working on 2.10.',
      id: 'validation-token-missing',
      sample: missing.warning,
      severity: 'warning',
      title: 'ckanext-validation sends the site user key for private datasets (no pass_auth_header_value)',
    })
  }
  // A token setting of a plugin that is not in ckan.plugins is read by nobody today, but the plugin
  // may be enabled through the environment (CKAN__PLUGINS with ckanext-envvars) or later, and would
  // then send a key CKAN 2.10 ignores.
  const readers = (key: string) => SERVICE_TOKEN_RULES.filter((rule) => rule.keys.includes(key))
  const dormant = [...new Set(SERVICE_TOKEN_RULES.flatMap((rule) => rule.keys))]
    .filter((key) => readers(key).every((rule) => !plugins.includes(rule.plugin)))
    .filter((key) => credentialKind(setting(key).value?.trim() ?? '') === 'legacy-key')
    .map(
      (key) =>
        `${key} (${readers(key)
          .map((rule) => rule.plugin)
          .join(', ')} not in ckan.plugins)`,
    )
  if (dormant.length > 0) {
    findings.push({
      count: dormant.length,
      fix: 'Replace the key with an API token anyway (ckan-migrate rewrite-config does), or delete the line if the service is gone: the plugin may be enabled through the environment or later, and CKAN 2.10 ignores legacy keys.',
      id: 'disabled-service-token-is-legacy-key',
      sample: dormant,
      severity: 'warning',
      title: `${dormant.length} token settings of plugins that are not enabled hold a legacy API key`,
    })
  }
  if (legacy.length > 0) {
    findings.push({
      count: legacy.length,
      fix: 'Replace the legacy key in the setting named with an API token (ckan-migrate rewrite-config): 2.10 ignores legacy keys.',
      id: 'service-token-is-legacy-key',
      sample: legacy,
      severity: 'blocker',
      title: `${legacy.length} service token settings hold a legacy API key, not a token`,
    })
  }
  return findings
}

/**
 * ckan.auth.create_default_api_keys = true: CKAN still gives every new user a UUID in user.apikey
 * (set_api_key: ckan-2.9.11:ckan/model/user.py:L25-28, ckan-2.10.10:…:L40-43, ckan-2.11.5:…:L39-42;
 * ckan/ckan#7835), and 2.11's user_create returns it (keep_apikey = True in its user_dictize
 * context, ckan-2.11.5:ckan/logic/action/create.py, def user_create at L928). On 2.10+ those keys
 * authenticate nothing.
 */
function defaultApiKeysFinding(version: CkanVersion): AuditFinding {
  const off =
    'Set ckan.auth.create_default_api_keys = false (or delete the line: false is the default) and restart CKAN'
  return version === '2.9'
    ? {
        count: 1,
        fix: `${off}: every new user gets a legacy key that 2.10 ignores, and its holder then needs a token too.`,
        id: 'create-default-api-keys',
        sample: ['ckan.auth.create_default_api_keys'],
        severity: 'warning',
        title: 'ckan.auth.create_default_api_keys is true: new users still get legacy keys',
      }
    : {
        count: 1,
        fix: `${off}, then clear the keys it made with ckan-migrate purge-keys --all: on CKAN ${version} they authenticate nothing, yet user_show and user_list still hand them out.`,
        id: 'create-default-api-keys',
        sample: ['ckan.auth.create_default_api_keys'],
        severity: 'warning',
        title: `ckan.auth.create_default_api_keys is true: CKAN ${version} keeps giving every new user a dead legacy key`,
      }
}

/** CKAN's asbool: true, yes, on, y, t, 1 (case-insensitive). */
function isTrue(value: string | undefined): boolean {
  return value !== undefined && ['1', 'on', 't', 'true', 'y', 'yes'].includes(value.trim().toLowerCase())
}

function isFalse(value: string | undefined): boolean {
  return value !== undefined && ['0', 'f', 'false', 'n', 'no', 'off'].includes(value.trim().toLowerCase())
}
