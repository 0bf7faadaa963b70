import type {CkanIni} from './ckan-ini.js'
import {effectiveSetting, envvarsName} from './ckan-settings.js'
import type {CkanVersion} from './ckan-version.js'

/** CKAN's fallback header in 2.9/2.10 and its default in 2.11. */
export const AUTHORIZATION = 'Authorization'
/** CKAN 2.9/2.10's default for apikey_header_name (the header 2.10's own generated ini names). */
export const X_CKAN_API_KEY = 'X-CKAN-API-Key'
/** The headers a probe tries, in this order, when nothing says which one the site reads. */
export const PROBE_HEADERS: readonly string[] = [AUTHORIZATION, X_CKAN_API_KEY]

/**
 * The request headers CKAN takes the credential from, in the order it tries them (empty header
 * names are never read), given how `setting` reads the site's config:
 *
 * - 2.9: `apikey_header_name` (default X-CKAN-API-Key), then Authorization
 *   (ckan/ckan@ckan-2.9.11:ckan/views/__init__.py L20-21, L203-283 `_get_user_for_apikey`).
 * - 2.10: the same two, in the same order (ckan-2.10.10:ckan/views/__init__.py L125-147
 *   `_get_user_for_apitoken` reads `config.get("apikey_header_name")`); `apitoken_header_name` is
 *   not read by 2.10, whatever its docs say.
 * - 2.11: only ONE header, `apitoken_header_name` (ckan-2.11.5:ckan/views/__init__.py L125-137).
 *   Its declaration names `apikey_header_name` as its legacy key
 *   (ckan-2.11.5:ckan/config/config_declaration.yaml L402-409), so when apitoken_header_name is
 *   unset CKAN takes the value of apikey_header_name (Declaration.make_safe,
 *   ckan-2.11.5:ckan/config/declaration/__init__.py L122-141), and only then the default
 *   Authorization. An ini carried over from 2.10 with `apikey_header_name = X-CKAN-API-Key` makes
 *   2.11 read X-CKAN-API-Key and nothing else.
 */
export function headersCkanReads(version: CkanVersion, setting: (key: string) => string | undefined): string[] {
  if (version === '2.11') {
    const apitoken = setting('apitoken_header_name')
    const name = apitoken ?? setting('apikey_header_name') ?? AUTHORIZATION
    return name.trim() === '' ? [] : [name.trim()]
  }
  const configured = (setting('apikey_header_name') ?? X_CKAN_API_KEY).trim()
  return configured === '' || sameHeader(configured, AUTHORIZATION) ? [AUTHORIZATION] : [configured, AUTHORIZATION]
}

/** HTTP header names are case-insensitive. */
export function sameHeader(a: string, b: string): boolean {
  return a.toLowerCase() === b.toLowerCase()
}

export type TokenHeaderSource = 'config' | 'env' | 'flag' | 'probe' | 'run'

/** The header ckan-migrate sends credentials in, and why (for messages and the run folder). */
export type TokenHeader = {
  name: string
  source: TokenHeaderSource
  /** Why this header, e.g. "apikey_header_name in /etc/ckan/default/ckan.ini (CKAN 2.11 reads it as apitoken_header_name)". */
  why: string
}

/** A `--header-name` value: a bare HTTP header name (no colon, no value, no "Bearer "). */
export function isHeaderName(value: string): boolean {
  return /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(value)
}

/**
 * The header the site reads, as far as its config says, before anything is sent: `--header-name`
 * when given; else, on 2.9/2.10, Authorization (always read, after apikey_header_name, and 2.11's
 * default, so one header serves before and after the upgrade); on 2.11 the one header it reads with the ini's (and its environment's)
 * apikey_header_name / apitoken_header_name; without an ini, the ckanext-envvars variables
 * CKAN___APIKEY_HEADER_NAME / CKAN___APITOKEN_HEADER_NAME when set (the only way CKAN takes these
 * keys from the environment: they are not in core's CONFIG_FROM_ENV_VARS). Undefined when nothing
 * says: the caller falls back to the run folder's record, then a probe.
 */
export function configuredTokenHeader(input: {
  env: NodeJS.ProcessEnv
  flag?: string
  ini?: CkanIni
  version: CkanVersion
}): TokenHeader | undefined {
  if (input.flag) return {name: input.flag, source: 'flag', why: '--header-name'}
  const keys = ['apitoken_header_name', 'apikey_header_name']
  type Found = {fromEnv: boolean; value: string | undefined; where: string}
  let setting: (key: string) => Found
  if (input.ini) {
    const ini = input.ini
    setting = (key) => {
      const found = effectiveSetting(ini, key, input.env)
      return found.source === 'env'
        ? {fromEnv: true, value: found.value, where: found.variable!}
        : {fromEnv: false, value: found.value, where: `${key} in ${ini.where(key)?.file ?? ini.path}`}
    }
  } else {
    if (!keys.some((key) => input.env[envvarsName(key)])) return undefined
    setting = (key) => ({fromEnv: true, value: input.env[envvarsName(key)] || undefined, where: envvarsName(key)})
  }
  const source: TokenHeaderSource = keys.some((key) => setting(key).fromEnv && setting(key).value !== undefined)
    ? 'env'
    : 'config'
  const reads = headersCkanReads(input.version, (key) => setting(key).value)
  if (reads.length === 0) return undefined
  const apitoken = setting('apitoken_header_name')
  const apikey = setting('apikey_header_name')
  // 2.9/2.10 always fall back to Authorization: sending it there keeps one header across the upgrade
  // to 2.11, whose default it is. 2.11 reads one header only: that one.
  if (input.version !== '2.11') {
    const first =
      apikey.value === undefined
        ? `${X_CKAN_API_KEY} (the default of apikey_header_name)`
        : `${reads[0]} (${apikey.where})`
    const why =
      reads.length === 1
        ? `CKAN ${input.version} reads ${AUTHORIZATION}${apikey.value === undefined ? '' : ` (${apikey.where})`}`
        : `CKAN ${input.version} reads ${AUTHORIZATION} after ${first}`
    return {name: AUTHORIZATION, source, why}
  }
  const name = reads[0]!
  let why: string
  if (apitoken.value !== undefined) why = apitoken.where
  else if (apikey.value !== undefined)
    why = `${apikey.where}, which CKAN 2.11 reads as apitoken_header_name (its legacy key)`
  else why = 'CKAN 2.11’s default (neither apitoken_header_name nor apikey_header_name is set)'
  return {name, source, why}
}

/** The outcome of choosing the header with a credential that should be accepted. */
export type HeaderChoice =
  /** Accepted through `header`. `instead`: the header config or the run folder named, which CKAN refused. */
  | {accepted: true; header: TokenHeader; instead?: TokenHeader}
  /** Refused through every header tried (a bad credential, or a header nobody named). */
  | {accepted: false; header: TokenHeader; tried: string[]}

/**
 * Settles the header with one credential that should work (a sysadmin's for get_site_user, a
 * run's token for api_token_list): the known header first (config, else the run folder's record),
 * and only when CKAN refuses it, the other usual headers, so a 403 is never blamed on the
 * credential (or the JWT secret) while the site merely reads another header. `accepts` answers
 * true for 200, false for 403, and throws anything else.
 */
export async function chooseTokenHeader(input: {
  accepts: (name: string) => Promise<boolean>
  known?: TokenHeader
  recorded?: string
}): Promise<HeaderChoice> {
  const first: TokenHeader | undefined =
    input.known ?? (input.recorded ? {name: input.recorded, source: 'run', why: 'the run folder'} : undefined)
  const tried: string[] = []
  if (first) {
    if (await input.accepts(first.name)) return {accepted: true, header: first}
    tried.push(first.name)
  }
  for (const name of PROBE_HEADERS) {
    if (tried.some((done) => sameHeader(done, name))) continue
    if (await input.accepts(name)) {
      const header: TokenHeader = {name, source: 'probe', why: 'a probe: CKAN accepted the credential through it'}
      return first ? {accepted: true, header, instead: first} : {accepted: true, header}
    }
    tried.push(name)
  }
  return {accepted: false, header: first ?? {name: AUTHORIZATION, source: 'probe', why: 'none worked'}, tried}
}

/** A warning for a header CKAN refused while another worked. */
export function headerMismatchWarning(choice: HeaderChoice): string | undefined {
  if (!choice.accepted || !choice.instead) return undefined
  return `CKAN refused the credential in ${choice.instead.name} (from ${choice.instead.why}) but accepted it in ${choice.header.name}: this site reads ${choice.header.name}, so ckan-migrate uses it (clients must send their tokens in ${choice.header.name} too). Pass --header-name ${choice.header.name} or fix --ckan-ini to silence this.`
}
