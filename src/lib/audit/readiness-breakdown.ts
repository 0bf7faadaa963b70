import type {CkanIni} from '../site/ckan-ini.js'
import {effectiveSetting} from '../site/ckan-settings.js'
import {credentialKind} from '../site/credential.js'
import type {CkanDatabase, Queryable} from '../site/ckan-database.js'
import type {CkanVersion} from '../site/ckan-version.js'
import {SERVICE_CATALOG} from '../services/service-catalog.js'

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
 * The figures behind the readiness page (`audit --html`): aggregates only, never a name. Computed
 * only when the page is asked for, so a plain audit reads "user" once (docs/commands/audit.md).
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

const ACTIVITY_BUCKET = (seen: string) => `CASE
    WHEN ${seen} IS NULL THEN 'never'
    WHEN ${seen} >= now_utc - interval '30 days' THEN 'days30'
    WHEN ${seen} >= now_utc - interval '90 days' THEN 'days90'
    WHEN ${seen} >= now_utc - interval '365 days' THEN 'days365'
    ELSE 'older' END`

/**
 * One pass over active users (the site user apart, $1): sysadmin, key, tokens, and the bucket of
 * the latest of: their newest activity row, their tokens' last use, and (2.10+) user.last_active.
 */
const credentialsQuery = (options: {activity: boolean; lastActive: boolean}) => {
  const seen = [...(options.activity ? ['a.at'] : []), 't.used', ...(options.lastActive ? ['u.last_active'] : [])]
  return `
  WITH clock AS (SELECT (now() AT TIME ZONE 'UTC') AS now_utc),
       t AS (SELECT user_id, max(last_access) AS used FROM api_token GROUP BY user_id)
       ${options.activity ? `, a AS (SELECT user_id, max("timestamp") AS at FROM activity GROUP BY user_id)` : ''}
  SELECT (u.sysadmin IS TRUE) AS sysadmin, (u.apikey IS NOT NULL AND u.apikey <> '') AS has_key,
         (t.user_id IS NOT NULL) AS has_tokens, ${ACTIVITY_BUCKET(`greatest(${seen.join(', ')})`)} AS seen,
         count(*)::int AS users
  FROM "user" u CROSS JOIN clock
  LEFT JOIN t ON t.user_id = u.id
  ${options.activity ? 'LEFT JOIN a ON a.user_id = u.id' : ''}
  WHERE u.state = 'active' AND u.name <> $1
  GROUP BY 1, 2, 3, 4`
}

/**
 * Tokens by expiry. The ISO 8601 text CKAN stores is compared as text with the boundaries in the
 * same layout: a malformed value can never fail the audit (it counts as never expiring).
 */
const EXPIRY_QUERY = `
  WITH clock AS (SELECT now() AT TIME ZONE 'UTC' AS now_utc),
       bounds AS (SELECT to_char(now_utc, 'YYYY-MM-DD"T"HH24:MI:SS') AS now_text,
                         to_char(now_utc + interval '7 days', 'YYYY-MM-DD"T"HH24:MI:SS') AS in7,
                         to_char(now_utc + interval '30 days', 'YYYY-MM-DD"T"HH24:MI:SS') AS in30,
                         to_char(now_utc, 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS now_iso FROM clock),
       e AS (SELECT CASE WHEN plugin_extras -> 'expire_api_token' ->> 'exp' ~ '^\\d{4}-\\d\\d-\\d\\d'
                         THEN plugin_extras -> 'expire_api_token' ->> 'exp' END AS exp FROM api_token)
  SELECT b.now_iso, CASE WHEN e.exp IS NULL THEN 'never' WHEN e.exp < b.now_text THEN 'expired'
              WHEN e.exp < b.in7 THEN 'days7' WHEN e.exp < b.in30 THEN 'days30' ELSE 'later' END AS bucket,
         count(e.*)::int AS tokens
  FROM bounds b LEFT JOIN e ON true GROUP BY 1, 2`

export type BreakdownOptions = {
  env: NodeJS.ProcessEnv
  hasApiTokenTable: boolean
  ini?: CkanIni
  plugins: readonly string[]
  siteUserName: string
  version: CkanVersion | undefined
}

/** pg_export_snapshot failed: the transaction it ran in is aborted and must be run again without it. */
export class SnapshotNotExported extends Error {}

/**
 * Exports the snapshot of the audit's REPEATABLE READ transaction, for the breakdown's second
 * connection (startBreakdownBeside). It must be the transaction's first statement that can fail:
 * a failure aborts the transaction (SnapshotNotExported: run it again without). Undefined on a
 * hot standby of PostgreSQL 9.x, which cannot export one (10 and later can, as pg_dump -j uses).
 */
export async function exportAuditSnapshot(audit: Queryable): Promise<string | undefined> {
  const {rows} = await audit.query<{standby: boolean}>(
    `SELECT current_setting('server_version_num')::int < 100000 AND pg_is_in_recovery() AS standby`,
  )
  if (rows[0]?.standby) return undefined
  try {
    const {rows: exported} = await audit.query<{id: string}>('SELECT pg_export_snapshot() AS id')
    return exported[0]!.id
  } catch (error) {
    throw new SnapshotNotExported('pg_export_snapshot failed', {cause: error})
  }
}

/**
 * The breakdown on a second connection that reads the audit transaction's exported snapshot
 * (`SET TRANSACTION SNAPSHOT`), so that its pass over "user" runs while the census runs on the
 * first connection, and its figures are those of the same instant as --json's. Await it before
 * the audit's transaction ends. Resolves undefined where it cannot be done (no connection left,
 * anything else): the caller then collects the breakdown in its own transaction after the
 * census, as it always does on the embedded PGlite (one session for every client).
 */
export async function breakdownBeside(
  snapshot: string,
  open: () => Promise<CkanDatabase>,
  prepare: (sql: Queryable) => Promise<void>,
  options: BreakdownOptions,
): Promise<AuditBreakdown | undefined> {
  let database: CkanDatabase | undefined
  try {
    database = await open()
    await database.client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY')
    await database.client.query(`SET TRANSACTION SNAPSHOT '${snapshot.replace(/'/g, "''")}'`)
    await prepare(database.client)
    return await collectBreakdown(database.client, options)
  } catch {
    return undefined
  } finally {
    await database?.client.query('ROLLBACK').catch(() => {})
    await database?.close().catch(() => {})
  }
}

/** Must run inside the audit's read-only transaction (same snapshot as the findings). */
export async function collectBreakdown(sql: Queryable, options: BreakdownOptions): Promise<AuditBreakdown> {
  const empty = (): CredentialCounts => ({both: 0, keyOnly: 0, neither: 0, tokenOnly: 0})
  const credentials = {people: empty(), sysadmins: empty()}
  const activity: ActivityBuckets = {days30: 0, days90: 0, days365: 0, never: 0, older: 0}
  const expiry: ExpiryBuckets & {total: number} = {days30: 0, days7: 0, expired: 0, later: 0, never: 0, total: 0}
  const {rows: tables} = await sql.query<{activity: boolean; last_active: boolean; now: string}>(
    `SELECT to_regclass('activity') IS NOT NULL AS activity,
            EXISTS (SELECT 1 FROM information_schema.columns
                    WHERE table_name = 'user' AND column_name = 'last_active' AND table_schema = current_schema()) AS last_active,
            to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS now`,
  )
  const shape = tables[0]!
  const basis = [
    ...(shape.activity ? ['activity.timestamp (the newest activity stream entry the user made)'] : []),
    ...(options.hasApiTokenTable ? ['api_token.last_access (the last use of any of their API tokens)'] : []),
    ...(shape.last_active ? ['user.last_active (CKAN 2.10+: the last request they made while signed in)'] : []),
  ]
  if (options.hasApiTokenTable) {
    const {rows} = await sql.query<{
      has_key: boolean
      has_tokens: boolean
      seen: keyof ActivityBuckets
      sysadmin: boolean
      users: number
    }>(credentialsQuery({activity: shape.activity, lastActive: shape.last_active}), [options.siteUserName])
    for (const row of rows) {
      const counts = row.sysadmin ? credentials.sysadmins : credentials.people
      const state: keyof CredentialCounts = row.has_key
        ? row.has_tokens
          ? 'both'
          : 'keyOnly'
        : row.has_tokens
          ? 'tokenOnly'
          : 'neither'
      counts[state] += row.users
      if (row.has_key) activity[row.seen] += row.users
    }
    const {rows: expiries} = await sql.query<{bucket: keyof ExpiryBuckets; now_iso: string; tokens: number}>(
      EXPIRY_QUERY,
    )
    for (const row of expiries) {
      expiry[row.bucket] += row.tokens
      expiry.total += row.tokens
    }
  }
  return {
    credentials,
    keyHolderActivity: {basis, buckets: activity},
    now: shape.now,
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
