import type {CkanIni} from '../site/ckan-ini.js'
import {effectiveSetting} from '../site/ckan-settings.js'
import {credentialKind} from '../site/credential.js'
import type {Queryable} from '../site/ckan-database.js'
import type {CkanDatabaseShape} from '../site/ckan-version.js'
import {SERVICE_CATALOG} from '../services/service-catalog.js'
import type {BreakdownColumns, Census} from './user-census.js'

/** Active users by what they can authenticate with. */
export type CredentialCounts = {both: number; keyOnly: number; neither: number; tokenOnly: number}

/** Legacy-key holders by their latest sign of life (see `basis`). */
export type ActivityBuckets = {days30: number; days90: number; days365: number; never: number; older: number}

/** API tokens by expiry (expire_api_token's plugin_extras.expire_api_token.exp). */
export type ExpiryBuckets = {days30: number; days7: number; expired: number; later: number; never: number}

export type ServiceCredential = {
  /** The ckan.ini key that must hold the service's token. */
  configKey: string
  /** What the setting holds, by its shape (never the value). */
  credential: 'legacy-key' | 'missing' | 'token' | 'unknown'
  /** One of the service's plugins is in ckan.plugins. */
  enabled: boolean
  /** What `rewrite-config` does with it: writes a new token, keeps the token there, or nothing (not enabled). */
  rewriteConfig: 'keeps' | 'not-enabled' | 'writes-token'
  service: string
  /** Where the value comes from: ckan.ini, an environment variable (env file), or nowhere. */
  source: 'env' | 'ini' | 'unset'
  /** The environment variable, when source is env. */
  variable: null | string
}

/**
 * The figures behind the readiness page (`audit --html`): aggregates only, never a name. Counted
 * by the census itself when the page is asked for (user-census.ts), so the page costs no pass
 * over "user" of its own (docs/commands/audit.md).
 */
export type AuditBreakdown = {
  /** Active users (the site user apart): people, and sysadmins apart. */
  credentials: {people: CredentialCounts; sysadmins: CredentialCounts}
  /** Active legacy-key holders (the site user apart) by the latest sign of life the database records. */
  keyHolderActivity: {
    /** What the sign of life is: the columns read (CKAN records no use of a legacy key). */
    basis: string[]
    buckets: ActivityBuckets
  }
  /** Computed at the database's clock (UTC), the audit transaction's start. */
  now: string
  services: ServiceCredential[]
  tokenExpiry: ExpiryBuckets & {total: number}
}

export type BreakdownOptions = {
  env: NodeJS.ProcessEnv
  ini?: CkanIni
  plugins: readonly string[]
}

/** BreakdownColumns, and what the page says of them: the database's clock and which tables exist. */
export type BreakdownShape = BreakdownColumns & {activityTable: boolean; now: string}

/**
 * What the census must read a sign of life from on this database (BreakdownColumns), from the
 * shape inspectCkanDatabase found, and the database's clock (UTC, the transaction's start) the
 * figures are measured at: one statement. Must run inside the audit's read-only transaction,
 * before the census: it sees what the census will see.
 */
export async function breakdownColumns(sql: Queryable, shape: CkanDatabaseShape): Promise<BreakdownShape> {
  // A table is named only when it exists (else the statement fails to parse).
  const {rows} = await sql.query<{activity_rows: boolean; now: string; tokens_used: boolean}>(
    `SELECT ${shape.hasActivityTable ? 'EXISTS (SELECT 1 FROM activity)' : 'false'} AS activity_rows,
            ${shape.hasApiTokenTable ? 'EXISTS (SELECT 1 FROM api_token WHERE last_access IS NOT NULL)' : 'false'} AS tokens_used,
            to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS now`,
  )
  const row = rows[0]!
  return {
    activityRows: row.activity_rows,
    activityTable: shape.hasActivityTable,
    lastActive: shape.hasLastActiveColumn,
    now: row.now,
    tokensUsed: row.tokens_used,
  }
}

/**
 * The figures of the readiness page, from a census taken with `breakdown` (takeCensus): active
 * users (the site user apart) by credential, people and sysadmins apart; active key holders by
 * their latest sign of life; tokens by expiry; and the services' credentials from the settings.
 */
export function readinessBreakdown(
  census: Census,
  columns: BreakdownShape,
  options: BreakdownOptions & {hasApiTokenTable: boolean},
): AuditBreakdown {
  const empty = (): CredentialCounts => ({both: 0, keyOnly: 0, neither: 0, tokenOnly: 0})
  const credentials = {people: empty(), sysadmins: empty()}
  const activity: ActivityBuckets = {days30: 0, days90: 0, days365: 0, never: 0, older: 0}
  const expiry: ExpiryBuckets & {total: number} = {days30: 0, days7: 0, expired: 0, later: 0, never: 0, total: 0}
  const basis = [
    ...(columns.activityTable ? ['activity.timestamp (the newest activity stream entry the user made)'] : []),
    ...(options.hasApiTokenTable ? ['api_token.last_access (the last use of any of their API tokens)'] : []),
    ...(columns.lastActive ? ['user.last_active (CKAN 2.10+: the last request they made while signed in)'] : []),
  ]
  if (census.tokenExpiry) {
    for (const group of census.groups) {
      if (group.state !== 'active' || group.isSiteUser) continue
      const counts = group.sysadmin ? credentials.sysadmins : credentials.people
      const state: keyof CredentialCounts = group.hasKey
        ? group.hasTokens
          ? 'both'
          : 'keyOnly'
        : group.hasTokens
          ? 'tokenOnly'
          : 'neither'
      counts[state] += group.users
      if (group.hasKey && group.seen) activity[group.seen] += group.users
    }
    for (const [bucket, tokens] of Object.entries(census.tokenExpiry) as Array<[keyof ExpiryBuckets, number]>) {
      expiry[bucket] += tokens
      expiry.total += tokens
    }
  }
  return {
    credentials,
    keyHolderActivity: {basis, buckets: activity},
    now: columns.now,
    services: serviceCredentials(options),
    tokenExpiry: expiry,
  }
}

/** Each service of the catalog: enabled or not, where its token setting comes from, what it holds. */
function serviceCredentials(options: BreakdownOptions): ServiceCredential[] {
  return SERVICE_CATALOG.map((service) => {
    const enabled = service.plugins.some((plugin) => options.plugins.includes(plugin))
    const setting = options.ini ? effectiveSetting(options.ini, service.configKey, options.env) : undefined
    const value = setting?.value?.trim()
    const credential = value ? credentialKind(value) : 'missing'
    return {
      configKey: service.configKey,
      credential,
      enabled,
      rewriteConfig: !enabled ? 'not-enabled' : credential === 'token' ? 'keeps' : 'writes-token',
      service: service.service,
      source: setting?.source ?? 'unset',
      variable: setting?.source === 'env' ? (setting.variable ?? null) : null,
    }
  })
}
