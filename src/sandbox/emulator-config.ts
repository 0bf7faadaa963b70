import {readCkanIni} from '../lib/site/ckan-ini.js'
import {effectiveSetting, resolveJwtSecret} from '../lib/site/ckan-settings.js'
import {EXIT_CODES, MigrateError} from '../lib/errors.js'
import type {Secret} from '../lib/secret.js'
import type {CkanVersion} from '../lib/site/ckan-version.js'
import {headersCkanReads} from '../lib/site/token-header.js'

/**
 * What the emulator takes from the site's ckan.ini, read once per load (never per request), the
 * way the given CKAN version reads it: 2.9 lowercases keys, 2.10+ keep case; env overrides and
 * ckanext-envvars apply; JWT secrets through the same fallbacks CKAN uses.
 */
export type EmulatorConfig = {
  createDefaultApiKeys: boolean
  /** Secret tokens are verified with, or the error CKAN would raise on first use. */
  decodeSecret: Error | Secret
  defaultLifetime: number
  encodeSecret: Error | Secret
  errorEmailsTo: null | string
  expireApiToken: boolean
  /**
   * Request headers read for the credential, in order (lowercase), as headersCkanReads
   * (lib/site/token-header.ts, with CKAN's source cited) gives them: 2.9/2.10 `apikey_header_name`
   * (default X-CKAN-API-Key) then Authorization, `apitoken_header_name` ignored; 2.11 only
   * `apitoken_header_name`, else the value of its legacy key `apikey_header_name`, else Authorization.
   */
  headers: string[]
  lastActiveInterval: number
  localeDefault: string
  nbytes: number
  plugins: string[]
  /** ckan.auth.public_user_details (default true): false refuses user_show/user_list to anonymous callers. */
  publicUserDetails: boolean
  siteDescription: string
  siteId: string
  siteTitle: string
  siteUrl: string
}

function startupError(message: string): MigrateError {
  return new MigrateError(`CKAN would not start with this ckan.ini: ${message}`, {
    exitCode: EXIT_CODES.badInput,
    suggestion: 'Fix the ckan.ini (CKAN itself refuses to start with it), then reload the emulator.',
  })
}

export async function loadEmulatorConfig(
  path: string,
  version: CkanVersion,
  env: NodeJS.ProcessEnv = process.env,
): Promise<EmulatorConfig> {
  const ini = await readCkanIni(path, {caseRule: version === '2.9' ? 'lowercase' : 'preserve', env})
  const setting = (key: string) => effectiveSetting(ini, key, env).value
  const bool = (key: string, fallback: boolean) => {
    const value = setting(key)
    return value === undefined || value.trim() === ''
      ? fallback
      : ['1', 'on', 'true', 'yes'].includes(value.trim().toLowerCase())
  }
  const integer = (key: string, fallback: number) => {
    const value = setting(key)
    if (value === undefined || value.trim() === '') return fallback
    const parsed = Number.parseInt(value, 10)
    if (Number.isNaN(parsed)) throw startupError(`${key} is not an integer`)
    return parsed
  }
  const siteUrl = (setting('ckan.site_url') ?? '').replace(/\/+$/, '')
  if (siteUrl === '') throw startupError('ckan.site_url is not set')
  const plugins = (setting('ckan.plugins') ?? '').split(/\s+/).filter(Boolean)
  if (version !== '2.9' && plugins.includes('datapusher')) {
    for (const key of ['ckan.datapusher.url', 'ckan.datapusher.api_token'])
      if (!setting(key)) throw startupError(`Config option \`${key}\` must be set to use the DataPusher.`)
  }
  if (version === '2.11' && !setting('SECRET_KEY') && !setting('beaker.session.secret'))
    throw startupError('SECRET_KEY is not set')
  const secret = async (use: 'decode' | 'encode'): Promise<Error | Secret> => {
    try {
      return (await resolveJwtSecret(ini, version, use, env)).secret
    } catch (error) {
      return error as Error
    }
  }
  const headers = headersCkanReads(version, setting).map((name) => name.toLowerCase())
  return {
    createDefaultApiKeys: bool('ckan.auth.create_default_api_keys', false),
    decodeSecret: await secret('decode'),
    defaultLifetime: integer('expire_api_token.default_lifetime', 3600),
    encodeSecret: await secret('encode'),
    errorEmailsTo: setting('email_to') ?? (version === '2.9' ? null : ''),
    expireApiToken: plugins.includes('expire_api_token'),
    headers,
    lastActiveInterval: integer('ckan.user.last_active_interval', 600),
    localeDefault: setting('ckan.locale_default') || 'en',
    nbytes: integer('api_token.nbytes', 32),
    plugins,
    publicUserDetails: bool('ckan.auth.public_user_details', true),
    siteDescription: setting('ckan.site_description') ?? '',
    // 2.9 names the site after ckan.site_url's host when ckan.site_id is unset (environment.py);
    // 2.10+ declare the default "default" (config_declaration.yaml).
    siteId: setting('ckan.site_id') || (version === '2.9' ? new URL(siteUrl).hostname : 'default'),
    siteTitle: setting('ckan.site_title') || 'CKAN',
    siteUrl,
  }
}
