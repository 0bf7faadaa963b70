import type {RequestObserver} from './adaptive-limit.js'
import {CkanApiClient, CkanApiError, type CkanStatus} from './ckan-api-client.js'
import type {CkanIni} from './ckan-ini.js'
import {effectiveSetting} from './ckan-settings.js'
import type {Credential} from './credential.js'
import {randomUUID} from 'node:crypto'

import {EXIT_CODES, MigrateError} from '../errors.js'
import {Secret} from '../secret.js'
import {refusesLegacyKeys} from './ckan-version.js'
import {decodeJwtPayload} from './jwt.js'

export type SitePreflight = {
  client: CkanApiClient
  /** Major.minor, e.g. '2.9'. */
  major: string
  siteUserName: string
  status: CkanStatus
}

export type SitePreflightOptions = {
  caCertPath?: string
  ckanUrl: URL
  credential: Credential
  env?: NodeJS.ProcessEnv
  ini?: CkanIni
  /** Told about every HTTP attempt: the run's concurrency limiter. */
  observer?: RequestObserver
  /** The command's interrupt: ends the client's calls and retry waits (ckan-api-client.ts). */
  signal?: AbortSignal
  timeoutMs?: number
}

/**
 * The checks every writing token command runs first (also under --dry-run): the action API
 * answers (status_show), the credential is a sysadmin's (get_site_user answers only
 * sysadmins over HTTP), and a legacy key is refused early on 2.10+ where it means anonymous.
 */
export async function preflightSite(options: SitePreflightOptions): Promise<SitePreflight> {
  const env = options.env ?? process.env
  const client = new CkanApiClient({
    caCertPath: options.caCertPath,
    ckanUrl: options.ckanUrl,
    credential: options.credential.secret,
    headerName: options.ini ? headerNameFrom(options.ini, env) : undefined,
    observer: options.observer,
    signal: options.signal,
    timeoutMs: options.timeoutMs,
  })
  try {
    const status = await client.statusShow()
    const major = status.ckanVersion.split('.').slice(0, 2).join('.')
    const modern = refusesLegacyKeys(status.ckanVersion)
    if (options.credential.kind === 'legacy-key' && modern) {
      throw new MigrateError(
        `The credential in ${options.credential.source} is a legacy API key, and legacy keys stop working on ${status.ckanVersion} (2.10+): use a token`,
        {
          exitCode: EXIT_CODES.ckanRejected,
          suggestion:
            'Create a sysadmin token (ckan user token add ADMIN ckan-migrate) and pass it with --api-key-file.',
        },
      )
    }
    let siteUserName: string
    try {
      siteUserName = (await client.getSiteUser()).name
    } catch (error) {
      if (error instanceof CkanApiError && error.status === 403)
        throw await refusedCredential(client, options.credential, modern)
      throw error
    }
    const iniSiteId = options.ini ? effectiveSetting(options.ini, 'ckan.site_id', env).value : undefined
    if (iniSiteId && iniSiteId !== siteUserName) {
      throw new MigrateError(
        `--ckan-ini says ckan.site_id = ${iniSiteId}, but ${options.ckanUrl.host} says its site user is ${siteUserName}`,
        {
          exitCode: EXIT_CODES.badInput,
          suggestion: 'Point --ckan-ini and --ckan-url at the same site.',
        },
      )
    }
    return {client, major, siteUserName, status}
  } catch (error) {
    await client.close()
    throw error
  }
}

/**
 * Why CKAN answered 403 to get_site_user. CKAN never answers 401: a revoked, expired or mistyped
 * credential makes the caller anonymous (ckan-2.10.10:ckan/views/__init__.py:L125-147), and
 * get_site_user refuses anonymous and non-sysadmin callers alike ("Only internal services…",
 * auth/get.py:L231-235). An expired JWT shows in its own `exp`. On 2.9, anonymous callers of an
 * action outside get.py are refused before its auth function runs ("Action … requires an
 * authenticated user", ckan-2.9.11:ckan/authz.py:L194-228), a known user by the auth function
 * ("Access denied"): api_token_revoke of a random jti tells the two apart with no effect (a
 * non-sysadmin may revoke only their own tokens; auth/delete.py:L171-184). On 2.10+ anonymous
 * callers reach the auth function too, so both get "Access denied" and the message says both.
 */
async function refusedCredential(
  client: CkanApiClient,
  credential: Credential,
  modern: boolean,
): Promise<MigrateError> {
  const what = `The credential in ${credential.source}`
  const notAccepted = (why: string) =>
    new MigrateError(`CKAN does not accept ${what.replace(/^The /, 'the ')}: ${why}`, {
      exitCode: EXIT_CODES.ckanRejected,
      suggestion:
        'Check that the file holds the whole token or key and nothing else; if it was revoked or expired, create a new sysadmin token (ckan user token add ADMIN ckan-migrate) and pass it with --api-key-file.',
    })
  const exp = decodeJwtPayload(credential.secret)?.exp
  if (exp !== undefined && exp * 1000 <= Date.now())
    return notAccepted(`the token expired on ${new Date(exp * 1000).toISOString()}`)
  const notSysadmin = new MigrateError(
    `${what} belongs to a user who is not a sysadmin (CKAN answered 403 to get_site_user)`,
    {
      exitCode: EXIT_CODES.ckanRejected,
      suggestion:
        "Pass a sysadmin's API token (or, on CKAN 2.9, legacy key) with --api-key-file or CKAN_MIGRATE_API_KEY.",
    },
  )
  if (!modern) {
    try {
      await client.callAction('api_token_revoke', {jti: new Secret(randomUUID())}, {replay: 'safe'})
    } catch (error) {
      if (!(error instanceof CkanApiError) || error.status !== 403) throw error
      if (/requires an authenticated user/.test(error.ckanMessage))
        return notAccepted('CKAN treats it as anonymous (a revoked, expired or mistyped key or token)')
      return notSysadmin
    }
    return notSysadmin
  }
  return new MigrateError(
    `CKAN refuses ${what.replace(/^The /, 'the ')} for get_site_user (403): it is revoked, expired or mistyped, or its user is not a sysadmin (CKAN answers both alike)`,
    {
      exitCode: EXIT_CODES.ckanRejected,
      suggestion:
        "Check that the file holds a sysadmin's whole token and nothing else; if in doubt, create a new one (ckan user token add ADMIN ckan-migrate) and pass it with --api-key-file.",
    },
  )
}

/**
 * Users sampled from the database must be known to the API under the same id and name: the
 * database and --ckan-url are the same site.
 */
export async function checkSameSite(
  client: CkanApiClient,
  samples: Array<{id: string; name: string}>,
  where: string,
): Promise<void> {
  for (const sample of samples) {
    let apiUser
    try {
      apiUser = await client.userShow(sample.id)
    } catch (error) {
      if (error instanceof CkanApiError && error.status === 404) apiUser = undefined
      else throw error
    }
    if (!apiUser || apiUser.name !== sample.name) {
      throw new MigrateError(
        `The database (${where}) and ${client.ckanUrl.host} are different sites: user ${JSON.stringify(sample.name)} of the database is unknown to the API`,
        {
          exitCode: EXIT_CODES.badInput,
          suggestion: 'Point --database-url (or --ckan-ini) and --ckan-url at the same CKAN site.',
        },
      )
    }
  }
}

/** The header CKAN reads the credential from: apitoken_header_name (2.11), else apikey_header_name, else Authorization. */
function headerNameFrom(ini: CkanIni, env: NodeJS.ProcessEnv): string | undefined {
  return (
    effectiveSetting(ini, 'apitoken_header_name', env).value ||
    effectiveSetting(ini, 'apikey_header_name', env).value ||
    undefined
  )
}
