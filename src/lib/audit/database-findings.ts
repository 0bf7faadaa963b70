import {EXIT_CODES, MigrateError} from '../errors.js'
import type {Queryable} from '../db/ckan-database.js'
import {ALEMBIC_HEADS, type CkanVersion} from '../sandbox/ckan-schema.js'
import {Secret} from '../secret.js'
import {type AuditFinding, SampleCollector} from './audit-finding.js'

/** What the audit learns about the database before it scans users. */
export type CkanDatabaseShape = {
  /** Every row of alembic_version (normally one). */
  alembicHeads: string[]
  hasApiTokenTable: boolean
  hasHarvestSourceTable: boolean
  /** The CKAN version the alembic head belongs to; undefined for unknown heads or a pre-2.9 site. */
  version: CkanVersion | undefined
}

/** Alembic revisions we can name: each version's head, and 2.9.0's head (migration 099, before 2.9.1's 100). */
const KNOWN_REVISIONS: ReadonlyMap<string, CkanVersion> = new Map([
  ...Object.entries(ALEMBIC_HEADS).map(([version, head]) => [head, version as CkanVersion] as const),
  ['3ae4b17ed66d', '2.9'],
])

const SELECT_TABLES = `
  SELECT to_regclass('"user"') IS NOT NULL AS has_user,
         to_regclass('api_token') IS NOT NULL AS has_api_token,
         to_regclass('alembic_version') IS NOT NULL AS has_alembic_version,
         to_regclass('harvest_source') IS NOT NULL AS has_harvest_source`

const SELECT_ALEMBIC_HEADS = 'SELECT version_num FROM alembic_version ORDER BY version_num'

/**
 * Finds out which CKAN database this is. A database without a "user" table is not CKAN's (exit 9);
 * one without api_token is older than CKAN 2.9 (a blocker finding, not an error).
 */
export async function inspectCkanDatabase(sql: Queryable, where: string): Promise<CkanDatabaseShape> {
  const {rows} = await sql.query<{has_alembic_version: boolean; has_api_token: boolean; has_harvest_source: boolean; has_user: boolean}>(
    SELECT_TABLES,
  )
  const tables = rows[0]!
  if (!tables.has_user) {
    throw new MigrateError(`The database at ${where} is not a CKAN database: it has no "user" table`, {
      exitCode: EXIT_CODES.notCkanDatabase,
      suggestion: "Point --database-url (or sqlalchemy.url in --ckan-ini) at the CKAN site's own database.",
    })
  }
  const alembicHeads = tables.has_alembic_version
    ? (await sql.query<{version_num: string}>(SELECT_ALEMBIC_HEADS)).rows.map((row) => row.version_num)
    : []
  const version = tables.has_api_token ? alembicHeads.map((head) => KNOWN_REVISIONS.get(head)).find(Boolean) : undefined
  return {alembicHeads, hasApiTokenTable: tables.has_api_token, hasHarvestSourceTable: tables.has_harvest_source, version}
}

/** Findings about the CKAN version itself. */
export function versionFindings(shape: CkanDatabaseShape, statusVersion?: string): AuditFinding[] {
  const findings: AuditFinding[] = []
  const heads = shape.alembicHeads.join(', ') || 'none'
  if (!shape.hasApiTokenTable) {
    findings.push({
      count: 1,
      fix: 'Upgrade the site to CKAN 2.9 first (ckan db upgrade creates the api_token table), then audit again.',
      id: 'pre-2.9',
      sample: [],
      severity: 'blocker',
      title: `The database has no api_token table: this site is older than CKAN 2.9 (alembic head ${heads})`,
    })
  } else if (shape.version === undefined) {
    findings.push({
      count: 1,
      details: {alembicHead: heads},
      fix: 'Run ckan db upgrade so the database matches its CKAN release, or check that this is the right database.',
      id: 'unknown-alembic-head',
      sample: shape.alembicHeads,
      severity: 'warning',
      title: `The alembic head ${heads} is not the head of CKAN 2.9, 2.10 or 2.11`,
    })
  } else {
    findings.push({
      count: 1,
      details: {alembicHead: heads, version: shape.version},
      fix: 'Nothing to do.',
      id: 'ckan-version',
      sample: [],
      severity: 'info',
      title: `The database schema is CKAN ${shape.version}'s (alembic head ${heads})`,
    })
  }
  if (statusVersion !== undefined && shape.version !== undefined && !statusVersion.startsWith(`${shape.version}.`)) {
    findings.push({
      count: 1,
      details: {database: shape.version, statusShow: statusVersion},
      fix: 'Check that --ckan-url and the database belong to the same site, and run ckan db upgrade if CKAN was upgraded.',
      id: 'ckan-version-mismatch',
      sample: [],
      severity: 'warning',
      title: `CKAN reports version ${statusVersion} but the database schema is ${shape.version}'s`,
    })
  }
  return findings
}

/** One row of the user scan: what the CSV shows, and what the counts are made of. Never the key. */
export type AuditUserRow = {
  apiTokens: number
  hasDuplicateEmail: boolean
  hasDuplicateKey: boolean
  hasEmail: boolean
  hasLegacyKey: boolean
  id: string
  isSysadmin: boolean
  isUuidKey: boolean
  /** First 8 hex digits of the SHA-256 of the legacy key (fingerprintOf), or '' without a key. */
  keyFingerprint: string
  /** Latest api_token.last_access (naive UTC in CKAN) as ISO 8601, or '' when no token was used. */
  lastTokenUse: string
  name: string
  state: string
  unusedApiTokens: number
}

type UserScanRecord = {
  apikey: null | string
  duplicate_email: boolean
  duplicate_key: boolean
  has_email: boolean
  id: string
  last_use: null | string
  name: string
  state: string
  sysadmin: boolean | null
  tokens: number
  unused: number
}

const TOKENS_BY_USER = `
  SELECT user_id, count(*)::int AS tokens, (count(*) FILTER (WHERE last_access IS NULL))::int AS unused,
         to_char(max(last_access), 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS last_use
  FROM api_token GROUP BY user_id`

const NO_TOKENS = 'SELECT NULL::text AS user_id, 0 AS tokens, 0 AS unused, NULL::text AS last_use WHERE false'

/**
 * Every user with its token counts and whether its key or (active) email is shared. Aggregates
 * run in PostgreSQL; the client sees one row per user, read through a cursor.
 */
const userScanQuery = (hasApiTokenTable: boolean) => `
  SELECT u.id, u.name, u.state, u.sysadmin,
         (u.email IS NOT NULL AND u.email <> '') AS has_email,
         nullif(u.apikey, '') AS apikey,
         coalesce(t.tokens, 0) AS tokens, coalesce(t.unused, 0) AS unused, t.last_use,
         (dk.apikey IS NOT NULL) AS duplicate_key,
         (de.email IS NOT NULL) AS duplicate_email
  FROM "user" u
  LEFT JOIN (${hasApiTokenTable ? TOKENS_BY_USER : NO_TOKENS}) t ON t.user_id = u.id
  LEFT JOIN (SELECT apikey FROM "user" WHERE apikey IS NOT NULL AND apikey <> ''
             GROUP BY apikey HAVING count(*) > 1) dk ON dk.apikey = u.apikey
  LEFT JOIN (SELECT email FROM "user" WHERE state = 'active' AND email IS NOT NULL
             GROUP BY email HAVING count(*) > 1) de ON de.email = u.email AND u.state = 'active'`

const CURSOR = 'ckan_migrate_audit_users'
const UUID = /^[\da-f]{8}-[\da-f]{4}-[\da-f]{4}-[\da-f]{4}-[\da-f]{12}$/i

/**
 * Streams every user through a server-side cursor, `batchSize` rows at a time, so memory stays
 * flat however large the site. Must run inside a transaction (the caller's read-only snapshot).
 * The legacy key is wrapped in a Secret the moment it arrives and only its fingerprint leaves.
 */
export async function* scanUsers(
  sql: Queryable,
  options: {batchSize?: number; hasApiTokenTable: boolean},
): AsyncGenerator<AuditUserRow> {
  const batchSize = Math.max(1, Math.floor(options.batchSize ?? 2000))
  await sql.query(`DECLARE ${CURSOR} NO SCROLL CURSOR FOR ${userScanQuery(options.hasApiTokenTable)}`)
  let open = true
  try {
    while (open) {
      const {rows} = await sql.query<UserScanRecord>(`FETCH ${batchSize} FROM ${CURSOR}`)
      if (rows.length < batchSize) open = false
      for (const row of rows) yield toUserRow(row)
    }
  } finally {
    // Closing fails only when the transaction already failed; the rollback closes it then.
    await sql.query(`CLOSE ${CURSOR}`).catch(() => {})
  }
}

function toUserRow(row: UserScanRecord): AuditUserRow {
  const key = row.apikey === null ? undefined : new Secret(row.apikey)
  row.apikey = null
  return {
    apiTokens: row.tokens,
    hasDuplicateEmail: row.duplicate_email,
    hasDuplicateKey: row.duplicate_key,
    hasEmail: row.has_email,
    hasLegacyKey: key !== undefined,
    id: row.id,
    isSysadmin: row.sysadmin === true,
    isUuidKey: key !== undefined && UUID.test(key.reveal()),
    keyFingerprint: key?.fingerprint() ?? '',
    lastTokenUse: row.last_use ?? '',
    name: row.name,
    state: row.state,
    unusedApiTokens: row.unused,
  }
}

/** Counts per user state, e.g. {active: 10, deleted: 2, pending: 1}. */
export type StateCounts = Record<string, number>

export type UserSummary = {
  apiTokens: {neverUsed: number; total: number; users: number}
  legacyKeys: StateCounts & {total: number}
  users: StateCounts & {sysadmins: number; total: number}
}

/**
 * Folds the user scan into counts and samples, keeping only SAMPLE_SIZE names per finding, and
 * turns them into findings. `siteUserName` is ckan.site_id: the site user always holds a key.
 */
export class UserFindingsCollector {
  readonly #apiTokens = {neverUsed: 0, total: 0, users: 0}
  readonly #keysByState: StateCounts = {}
  readonly #samples = {
    apiTokens: new SampleCollector(),
    duplicateEmails: new SampleCollector(),
    duplicateKeys: new SampleCollector(),
    keyHoldersWithTokens: new SampleCollector(),
    keys: new SampleCollector(),
    keysNotUuid: new SampleCollector(),
    keysWithoutToken: new SampleCollector(),
    neverUsed: new SampleCollector(),
    siteUserKey: new SampleCollector(),
    sysadminKeys: new SampleCollector(),
    withoutEmail: new SampleCollector(),
  }
  readonly #siteUserName: string
  #sysadmins = 0
  readonly #usersByState: StateCounts = {}
  #withoutEmailWithKey = 0

  constructor(siteUserName: string) {
    this.#siteUserName = siteUserName
  }

  add(user: AuditUserRow): void {
    const samples = this.#samples
    const isActive = user.state === 'active'
    const isSiteUser = user.name === this.#siteUserName
    this.#usersByState[user.state] = (this.#usersByState[user.state] ?? 0) + 1
    if (isActive && user.isSysadmin) this.#sysadmins += 1
    if (user.apiTokens > 0) {
      this.#apiTokens.total += user.apiTokens
      this.#apiTokens.users += 1
      samples.apiTokens.add(user.name)
    }
    if (user.unusedApiTokens > 0) {
      this.#apiTokens.neverUsed += user.unusedApiTokens
      samples.neverUsed.add(user.name)
    }
    if (isActive && !isSiteUser && !user.hasEmail) {
      samples.withoutEmail.add(user.name)
      if (user.hasLegacyKey) this.#withoutEmailWithKey += 1
    }
    if (user.hasDuplicateEmail) samples.duplicateEmails.add(user.name)
    if (!user.hasLegacyKey) return
    this.#keysByState[user.state] = (this.#keysByState[user.state] ?? 0) + 1
    samples.keys.add(user.name)
    if (isSiteUser) samples.siteUserKey.add(user.name)
    if (!user.isUuidKey) samples.keysNotUuid.add(user.name)
    if (user.hasDuplicateKey) samples.duplicateKeys.add(user.name)
    if (user.apiTokens > 0) samples.keyHoldersWithTokens.add(user.name)
    else if (isActive && !isSiteUser) samples.keysWithoutToken.add(user.name)
    if (isActive && user.isSysadmin && !isSiteUser) samples.sysadminKeys.add(user.name)
  }

  findings(): AuditFinding[] {
    const samples = this.#samples
    const candidates: AuditFinding[] = [
      {
        count: samples.keys.count,
        details: {...this.#keysByState},
        fix: 'Give each holder an API token with ckan-migrate issue-tokens, then clear the keys with ckan-migrate purge-keys.',
        id: 'legacy-keys',
        sample: samples.keys.names,
        severity: 'info',
        title: `${samples.keys.count} users hold a legacy API key (${describeStates(this.#keysByState)})`,
      },
      {
        count: samples.keysWithoutToken.count,
        fix: 'Run ckan-migrate issue-tokens so each of them has an API token before the upgrade: CKAN 2.10 ignores legacy keys.',
        id: 'legacy-keys-without-token',
        sample: samples.keysWithoutToken.names,
        severity: 'blocker',
        title: `${samples.keysWithoutToken.count} active users hold a legacy key and no API token: their scripts stop working on 2.10`,
      },
      {
        count: samples.sysadminKeys.count,
        fix: 'Issue these sysadmins tokens first and clear their keys soon after: a sysadmin key is full control of the site on 2.9.',
        id: 'sysadmin-legacy-keys',
        sample: samples.sysadminKeys.names,
        severity: 'warning',
        title: `${samples.sysadminKeys.count} active sysadmins hold a legacy key`,
      },
      {
        count: samples.siteUserKey.count,
        details: {siteUser: this.#siteUserName},
        fix: 'Leave it while CKAN 2.9 runs DataPusher or XLoader without their token settings; clear it after the upgrade (2.10 ignores it).',
        id: 'site-user-legacy-key',
        sample: samples.siteUserKey.names,
        severity: 'info',
        title: `The site user ${this.#siteUserName} holds a legacy key (CKAN gives it one; 2.9 services may use it)`,
      },
      {
        count: samples.keysNotUuid.count,
        fix: 'These keys were set by hand or by a plugin: find out which client sends them, give it a token, then clear the keys.',
        id: 'legacy-keys-not-uuid',
        sample: samples.keysNotUuid.names,
        severity: 'warning',
        title: `${samples.keysNotUuid.count} legacy keys are not UUIDs`,
      },
      {
        count: samples.duplicateKeys.count,
        fix: 'Users sharing a key cannot be told apart on 2.9 (the first match wins): issue each a token, then clear these keys with ckan-migrate purge-keys.',
        id: 'legacy-keys-duplicated',
        sample: samples.duplicateKeys.names,
        severity: 'warning',
        title: `${samples.duplicateKeys.count} users hold a legacy key that another user also holds`,
      },
      {
        count: samples.keyHoldersWithTokens.count,
        fix: 'Check that their clients use the token, then clear the keys with ckan-migrate purge-keys.',
        id: 'legacy-key-holders-with-tokens',
        sample: samples.keyHoldersWithTokens.names,
        severity: 'info',
        title: `${samples.keyHoldersWithTokens.count} users with a legacy key already have API tokens`,
      },
      {
        count: this.#apiTokens.total,
        details: {users: this.#apiTokens.users},
        fix: 'Nothing to do: tokens keep working after the upgrade as long as the JWT secret stays the same.',
        id: 'api-tokens',
        sample: samples.apiTokens.names,
        severity: 'info',
        title: `${this.#apiTokens.total} API tokens exist, held by ${this.#apiTokens.users} users`,
      },
      {
        count: this.#apiTokens.neverUsed,
        details: {users: samples.neverUsed.count},
        fix: 'Ask the holders whether they still need them; revoke the ones nobody uses.',
        id: 'api-tokens-never-used',
        sample: samples.neverUsed.names,
        severity: 'info',
        title: `${this.#apiTokens.neverUsed} API tokens were never used (held by ${samples.neverUsed.count} users)`,
      },
      {
        count: samples.withoutEmail.count,
        details: {withLegacyKey: this.#withoutEmailWithKey},
        fix: 'Add an email address for each (ckan user show / the user edit page) or hand their access bundle over another way.',
        id: 'users-without-email',
        sample: samples.withoutEmail.names,
        severity: 'warning',
        title: `${samples.withoutEmail.count} active users have no email address, so no access bundle can be mailed to them`,
      },
      {
        count: samples.duplicateEmails.count,
        fix: 'Give each active user its own email address or delete the duplicates (ckan db duplicate_emails lists them): CKAN 2.10 migration 102 adds a unique index on active emails and fails otherwise.',
        id: 'duplicate-active-emails',
        sample: samples.duplicateEmails.names,
        severity: 'blocker',
        title: `${samples.duplicateEmails.count} active users share an email address with another active user`,
      },
    ]
    return candidates.filter((finding) => finding.count > 0)
  }

  summary(): UserSummary {
    const total = (counts: StateCounts) => Object.values(counts).reduce((sum, count) => sum + count, 0)
    return {
      apiTokens: {...this.#apiTokens},
      legacyKeys: {active: 0, deleted: 0, pending: 0, ...this.#keysByState, total: total(this.#keysByState)},
      users: {active: 0, deleted: 0, pending: 0, ...this.#usersByState, sysadmins: this.#sysadmins, total: total(this.#usersByState)},
    }
  }
}

function describeStates(counts: StateCounts): string {
  const parts = Object.entries(counts)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([state, count]) => `${count} ${state}`)
  return parts.join(', ') || 'none'
}
