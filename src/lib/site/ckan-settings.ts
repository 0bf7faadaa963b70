import {EXIT_CODES, MigrateError} from '../errors.js'
import {readFailure, readInputText, SMALL_FILE_LIMIT} from '../fs/input-file.js'
import {Secret} from '../secret.js'
import type {CkanIni} from './ckan-ini.js'

import type {CkanVersion} from './ckan-version.js'

/**
 * Core CKAN's environment overrides (ckan/config/environment.py CONFIG_FROM_ENV_VARS): a
 * non-empty variable replaces the ini value at run time, in 2.9, 2.10 and 2.11 alike.
 */
export const CONFIG_FROM_ENV_VARS: Readonly<Record<string, string>> = {
  'ckan.datapusher.url': 'CKAN_DATAPUSHER_URL',
  'ckan.datastore.read_url': 'CKAN_DATASTORE_READ_URL',
  'ckan.datastore.write_url': 'CKAN_DATASTORE_WRITE_URL',
  'ckan.max_resource_size': 'CKAN_MAX_UPLOAD_SIZE_MB',
  'ckan.redis.url': 'CKAN_REDIS_URL',
  'ckan.site_id': 'CKAN_SITE_ID',
  'ckan.site_url': 'CKAN_SITE_URL',
  'ckan.storage_path': 'CKAN_STORAGE_PATH',
  'smtp.mail_from': 'CKAN_SMTP_MAIL_FROM',
  'smtp.password': 'CKAN_SMTP_PASSWORD',
  'smtp.server': 'CKAN_SMTP_SERVER',
  'smtp.starttls': 'CKAN_SMTP_STARTTLS',
  'smtp.user': 'CKAN_SMTP_USER',
  solr_password: 'CKAN_SOLR_PASSWORD',
  solr_url: 'CKAN_SOLR_URL',
  solr_user: 'CKAN_SOLR_USER',
  'sqlalchemy.url': 'CKAN_SQLALCHEMY_URL',
}

export type EffectiveSetting = {
  /** 'env' when an environment variable overrides (or supplies) the ini's value. */
  source: 'env' | 'ini' | 'unset'
  value: string | undefined
  /** The environment variable that won, when source is 'env'. */
  variable?: string
}

/**
 * The name ckanext-envvars reads for a config key: `ckan.x.y` → CKAN__X__Y, `ckanext.x.y` →
 * CKANEXT__X__Y, anything else → CKAN___ + the key (e.g. CKAN___API_TOKEN__JWT__ENCODE__SECRET).
 */
export function envvarsName(key: string): string {
  const upper = (part: string) => part.toUpperCase().replaceAll('.', '__')
  if (key.startsWith('ckan.')) return `CKAN__${upper(key.slice('ckan.'.length))}`
  if (key.startsWith('ckanext.')) return `CKANEXT__${upper(key.slice('ckanext.'.length))}`
  return `CKAN___${upper(key)}`
}

/** The config key ckanext-envvars derives from a variable name, or undefined for other variables. */
export function envvarsKey(variable: string): string | undefined {
  if (variable === 'CKAN___SECRET_KEY') return 'SECRET_KEY'
  if (variable.startsWith('CKAN___')) return variable.slice('CKAN___'.length).toLowerCase().replaceAll('__', '.')
  if (variable.startsWith('CKAN__'))
    return `ckan.${variable.slice('CKAN__'.length).toLowerCase().replaceAll('__', '.')}`
  if (variable.startsWith('CKANEXT__'))
    return `ckanext.${variable.slice('CKANEXT__'.length).toLowerCase().replaceAll('__', '.')}`
  return undefined
}

/**
 * The value CKAN runs with for `key`: ckanext-envvars variables (when the plugin is enabled),
 * then core's CKAN_* overrides (and the deprecated CKAN_DB for sqlalchemy.url), then the ini.
 */
export function effectiveSetting(
  ini: CkanIni | undefined,
  key: string,
  env: NodeJS.ProcessEnv = process.env,
): EffectiveSetting {
  if (ini?.plugins().includes('envvars')) {
    const variable = envvarsName(key)
    if (env[variable] !== undefined && env[variable] !== '') return {source: 'env', value: env[variable], variable}
  }
  const coreVariable = CONFIG_FROM_ENV_VARS[key]
  if (coreVariable && env[coreVariable]) return {source: 'env', value: env[coreVariable], variable: coreVariable}
  if (key === 'sqlalchemy.url' && env.CKAN_DB) return {source: 'env', value: env.CKAN_DB, variable: 'CKAN_DB'}
  const value = ini?.get(key)
  return value === undefined ? {source: 'unset', value: undefined} : {source: 'ini', value}
}

/** Environment variables that change what CKAN runs with (core CKAN_* overrides, envvars names). */
export function activeEnvOverrides(env: NodeJS.ProcessEnv = process.env): Array<{key: string; variable: string}> {
  const overrides: Array<{key: string; variable: string}> = []
  for (const [key, variable] of Object.entries(CONFIG_FROM_ENV_VARS)) if (env[variable]) overrides.push({key, variable})
  if (env.CKAN_DB) overrides.push({key: 'sqlalchemy.url', variable: 'CKAN_DB'})
  for (const variable of Object.keys(env).sort()) {
    const key = envvarsKey(variable)
    if (key && env[variable] !== undefined) overrides.push({key, variable})
  }
  return overrides
}

/** The config key holding the JWT secret CKAN falls back to when api_token.jwt.*.secret is unset. */
export function jwtSecretFallbackKey(version: CkanVersion): string {
  return version === '2.11' ? 'SECRET_KEY' : 'beaker.session.secret'
}

export type JwtSecret = {
  /** Which key supplied the value: the api_token.jwt.* key itself, or the fallback. */
  from: string
  /** 'string' or 'file' (the prefix). */
  kind: 'file' | 'string'
  /** The bytes HMAC-SHA256 signs with (a file's whole contents, trailing newline included). */
  secret: Secret
  /** True when api_token.jwt.{encode,decode}.secret is unset and CKAN falls back. */
  viaFallback: boolean
}

/**
 * The secret CKAN signs (encode) or verifies (decode) tokens with, exactly as
 * ckan/lib/api_token.py _get_secret does: the api_token.jwt.*.secret value, or "string:" + the
 * fallback key's value; then split at the first ":" into string:/file:. 2.11.1+ lets SECRET_KEY
 * itself fall back to beaker.session.secret.
 */
export async function resolveJwtSecret(
  ini: CkanIni,
  version: CkanVersion,
  use: 'decode' | 'encode',
  env: NodeJS.ProcessEnv = process.env,
): Promise<JwtSecret> {
  const key = `api_token.jwt.${use}.secret`
  let configured = effectiveSetting(ini, key, env).value ?? ''
  let from = key
  const viaFallback = configured === ''
  if (viaFallback) {
    from = jwtSecretFallbackKey(version)
    let fallback = effectiveSetting(ini, from, env).value ?? ''
    if (fallback === '' && version === '2.11') {
      from = 'beaker.session.secret'
      fallback = effectiveSetting(ini, from, env).value ?? ''
    }
    configured = `string:${fallback}`
  }
  const colon = configured.indexOf(':')
  const kind = configured.slice(0, colon)
  const value = configured.slice(colon + 1)
  if (colon === -1 || (kind !== 'string' && kind !== 'file')) {
    throw new MigrateError(`${key} in ${ini.path} has no string: or file: prefix`, {
      exitCode: EXIT_CODES.badInput,
      suggestion: `CKAN fails on the first token it sees with such a value: write ${key} = string:<secret>.`,
    })
  }
  if (value === '') {
    throw new MigrateError(`Neither ${key} nor ${jwtSecretFallbackKey(version)} is set in ${ini.path}`, {
      exitCode: EXIT_CODES.badInput,
      suggestion:
        'CKAN cannot sign or verify API tokens without a secret; set api_token.jwt.encode.secret and decode.secret.',
    })
  }
  if (kind === 'string') return {from, kind, secret: new Secret(value), viaFallback}
  try {
    return {from, kind, secret: new Secret(await readInputText(value, {maxBytes: SMALL_FILE_LIMIT})), viaFallback}
  } catch (error) {
    throw new MigrateError(`${key} names the file ${value}, which ${readFailure(error)}`, {
      cause: error,
      exitCode: EXIT_CODES.badInput,
      suggestion: 'Run ckan-migrate as a user who may read the secret file CKAN uses.',
    })
  }
}

export type DatabaseUrlChoice = {
  /** Where it came from, for messages: "--database-url", "CKAN_SQLALCHEMY_URL", "sqlalchemy.url in …". */
  source: string
  url: string
}

/**
 * The database to use: --database-url (or CKAN_MIGRATE_DATABASE_URL) when given; otherwise what
 * CKAN itself would use: CKAN_SQLALCHEMY_URL (or envvars) over sqlalchemy.url in ckan.ini.
 */
export function chooseDatabaseUrl(
  options: {databaseUrl?: string; ini?: CkanIni},
  env: NodeJS.ProcessEnv = process.env,
): DatabaseUrlChoice {
  if (options.databaseUrl) return {source: '--database-url', url: options.databaseUrl}
  if (options.ini) {
    const setting = effectiveSetting(options.ini, 'sqlalchemy.url', env)
    if (setting.value) {
      return {
        source:
          setting.source === 'env'
            ? setting.variable!
            : `sqlalchemy.url in ${options.ini.where('sqlalchemy.url')?.file ?? options.ini.path}`,
        url: setting.value,
      }
    }
    throw new MigrateError(`${options.ini.path} has no sqlalchemy.url in [app:main]`, {
      exitCode: EXIT_CODES.badInput,
      suggestion: 'Pass --database-url, or point --ckan-ini at the ckan.ini the site actually uses.',
    })
  }
  throw new MigrateError('No database given', {
    exitCode: EXIT_CODES.badInput,
    suggestion: 'Pass --database-url postgresql://USER:PASSWORD@HOST/DB or --ckan-ini /etc/ckan/default/ckan.ini.',
  })
}
