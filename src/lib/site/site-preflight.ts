import type {RequestObserver} from './adaptive-limit.js'
import {CkanApiClient, CkanApiError, type CkanStatus} from './ckan-api-client.js'
import {type CkanIni, readCkanIni} from './ckan-ini.js'
import {effectiveSetting} from './ckan-settings.js'
import type {Credential} from './credential.js'
import {randomUUID} from 'node:crypto'

import {EXIT_CODES, MigrateError} from '../errors.js'
import {Secret} from '../secret.js'
import {iniCaseRule, refusesLegacyKeys, versionOfRelease} from './ckan-version.js'
import {
  chooseTokenHeader,
  configuredTokenHeader,
  type HeaderChoice,
  headerMismatchWarning,
  type TokenHeader,
} from './token-header.js'
import {decodeJwtPayload} from './jwt.js'

export type SitePreflight = {
  /** Sends the credential in `header`. */
  client: CkanApiClient
  /** The header CKAN accepted the credential in (token-header.ts). */
  header: TokenHeader
  /** Major.minor, e.g. '2.9'. */
  major: string
  siteUserName: string
  status: CkanStatus
  /** Not errors, worth telling (e.g. the ini named a header CKAN does not read). */
  warnings: string[]
}

export type SitePreflightOptions = {
  caCertPath?: string
  ckanUrl: URL
  credential: Credential
  env?: NodeJS.ProcessEnv
  /** --header-name: the header to send the credential in, whatever the ini says. */
  headerName?: string
  /** The site's ckan.ini, already read; or its path, read here with the live version's case rule. */
  ini?: CkanIni
  iniPath?: string
  /** Told about every HTTP attempt: the run's concurrency limiter. */
  observer?: RequestObserver
  /** The header the run folder recorded, used when neither --header-name nor the ini says. */
  recordedHeader?: string
  /** The command's interrupt: ends the client's calls and retry waits (ckan-api-client.ts). */
  signal?: AbortSignal
  timeoutMs?: number
}

/**
 * The checks every writing token command runs first (also under --dry-run): the action API
 * answers (status_show), the credential is a sysadmin's (get_site_user answers only
 * sysadmins over HTTP), and a legacy key is refused early on 2.10+ where it means anonymous.
 * Settles the header the credential goes in (token-header.ts): --header-name, else what the
 * ini says this version reads, else the run folder's record, else a probe; a 403 through that
 * header is checked against the other usual headers before the credential is blamed.
 */
export async function preflightSite(options: SitePreflightOptions): Promise<SitePreflight> {
  const env = options.env ?? process.env
  const client = new CkanApiClient({
    caCertPath: options.caCertPath,
    ckanUrl: options.ckanUrl,
    credential: options.credential.secret,
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
    const version = versionOfRelease(status.ckanVersion)
    const ini =
      options.ini ??
      (options.iniPath ? await readCkanIni(options.iniPath, {caseRule: iniCaseRule(version), env}) : undefined)
    let siteUserName = ''
    const choice = await chooseTokenHeader({
      async accepts(name) {
        try {
          siteUserName = (await client.withHeader(name).getSiteUser()).name
          return true
        } catch (error) {
          if (error instanceof CkanApiError && error.status === 403) return false
          throw error
        }
      },
      known: configuredTokenHeader({env, flag: options.headerName, ini, version}),
      recorded: options.recordedHeader,
    })
    if (!choice.accepted)
      throw await refusedCredential(
        client.withHeader(choice.tried[0] ?? client.headerName),
        options.credential,
        modern,
        choice.tried,
      )
    refuseOverriddenFlag(choice)
    const warning = headerMismatchWarning(choice)
    const iniSiteId = ini ? effectiveSetting(ini, 'ckan.site_id', env).value : undefined
    if (iniSiteId && iniSiteId !== siteUserName) {
      throw new MigrateError(
        `--ckan-ini says ckan.site_id = ${iniSiteId}, but ${options.ckanUrl.host} says its site user is ${siteUserName}`,
        {
          exitCode: EXIT_CODES.badInput,
          suggestion: 'Point --ckan-ini and --ckan-url at the same site.',
        },
      )
    }
    return {
      client: client.withHeader(choice.header.name),
      header: choice.header,
      major,
      siteUserName,
      status,
      warnings: warning ? [warning] : [],
    }
  } catch (error) {
    await client.close()
    throw error
  }
}

/** --header-name is an order: when CKAN refuses it but reads another header, say so instead of using another. */
export function refuseOverriddenFlag(choice: HeaderChoice): void {
  if (choice.accepted && choice.instead?.source === 'flag') {
    throw new MigrateError(
      `CKAN refused the credential in the header ${choice.instead.name} (--header-name) but accepted it in ${choice.header.name}`,
      {
        exitCode: EXIT_CODES.ckanRejected,
        suggestion: `This site reads ${choice.header.name}: pass --header-name ${choice.header.name}, or leave the flag out.`,
      },
    )
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
  headersTried: readonly string[] = [],
): Promise<MigrateError> {
  const what = `The credential in ${credential.source}`
  // Every usual header was tried before CKAN's 403 is put down to the credential (token-header.ts).
  const sentIn = headersTried.length > 0 ? ` (sent in ${headersTried.join(', then in ')})` : ''
  const notAccepted = (why: string) =>
    new MigrateError(`CKAN does not accept ${what.replace(/^The /, 'the ')}: ${why}${sentIn}`, {
      exitCode: EXIT_CODES.ckanRejected,
      suggestion:
        'Check that the file holds the whole token or key and nothing else; if it was revoked or expired, create a new sysadmin token (ckan user token add ADMIN ckan-migrate) and pass it with --api-key-file.',
    })
  const exp = decodeJwtPayload(credential.secret)?.exp
  if (exp !== undefined && exp * 1000 <= Date.now())
    return notAccepted(`the token expired on ${new Date(exp * 1000).toISOString()}`)
  const notSysadmin = new MigrateError(
    `${what} belongs to a user who is not a sysadmin (CKAN answered 403 to get_site_user${sentIn ? `; ${sentIn.slice(2, -1)}` : ''})`,
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
    `CKAN refuses ${what.replace(/^The /, 'the ')} for get_site_user (403): it is revoked, expired or mistyped, or its user is not a sysadmin (CKAN answers both alike)${sentIn}`,
    {
      exitCode: EXIT_CODES.ckanRejected,
      suggestion:
        "Check that the file holds a sysadmin's whole token and nothing else; if in doubt, create a new one (ckan user token add ADMIN ckan-migrate) and pass it with --api-key-file; if the site reads the credential from another header, name it with --header-name.",
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
