import {EXIT_CODES, MigrateError} from '../errors.js'
import type {Queryable} from '../db/ckan-database.js'
import {ALEMBIC_HEADS, type CkanVersion} from '../sandbox/ckan-schema.js'
import {Secret} from '../secret.js'
import {type AuditFinding, SAMPLE_SIZE} from './audit-finding.js'

/** What the audit learns about the database before it scans users. */
export type CkanDatabaseShape = {
  /** Every row of alembic_version (normally one). */
  alembicHeads: string[]
  hasApiTokenTable: boolean
  hasHarvestSourceTable: boolean
  /** CKAN 2.10's migration 102 index: with it, two active users cannot share an email. */
  hasUniqueActiveEmailIndex: boolean
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
         to_regclass('harvest_source') IS NOT NULL AS has_harvest_source,
         to_regclass('idx_only_one_active_email') IS NOT NULL AS has_email_index`

const SELECT_ALEMBIC_HEADS = 'SELECT version_num FROM alembic_version ORDER BY version_num'

/**
 * Finds out which CKAN database this is. A database without a "user" table is not CKAN's (exit 9);
 * one without api_token is older than CKAN 2.9 (a blocker finding, not an error).
 */
export async function inspectCkanDatabase(sql: Queryable, where: string): Promise<CkanDatabaseShape> {
  const {rows} = await sql.query<{
    has_alembic_version: boolean
    has_api_token: boolean
    has_email_index: boolean
    has_harvest_source: boolean
    has_user: boolean
  }>(SELECT_TABLES)
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
  return {
    alembicHeads,
    hasApiTokenTable: tables.has_api_token,
    hasHarvestSourceTable: tables.has_harvest_source,
    hasUniqueActiveEmailIndex: tables.has_email_index,
    version,
  }
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

/** One row of the user scan (the CSV): never the key, only its fingerprint. */
export type AuditUserRow = {
  apiTokens: number
  hasEmail: boolean
  hasLegacyKey: boolean
  id: string
  isSysadmin: boolean
  /** First 8 hex digits of the SHA-256 of the legacy key (fingerprintOf), or '' without a key. */
  keyFingerprint: string
  /** Latest api_token.last_access (naive UTC in CKAN) as ISO 8601, or '' when no token was used. */
  lastTokenUse: string
  name: string
  state: string
}

type UserScanRecord = {
  apikey: null | string
  has_email: boolean
  id: string
  last_use: null | string
  name: string
  state: string
  sysadmin: boolean | null
  tokens: number
}

const TOKENS_BY_USER = `
  SELECT user_id, count(*)::int AS tokens, (count(*) FILTER (WHERE last_access IS NULL))::int AS unused,
         to_char(max(last_access), 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS last_use
  FROM api_token GROUP BY user_id`

const NO_TOKENS = 'SELECT NULL::text AS user_id, 0 AS tokens, 0 AS unused, NULL::text AS last_use WHERE false'

const userScanQuery = (hasApiTokenTable: boolean) => `
  SELECT u.id, u.name, u.state, u.sysadmin, (u.email IS NOT NULL AND u.email <> '') AS has_email,
         nullif(u.apikey, '') AS apikey, coalesce(t.tokens, 0) AS tokens, t.last_use
  FROM "user" u
  LEFT JOIN (${hasApiTokenTable ? TOKENS_BY_USER : NO_TOKENS}) t ON t.user_id = u.id`

const CURSOR = 'ckan_migrate_audit_users'

/**
 * Streams every user (for the CSV) through a server-side cursor, `batchSize` rows at a time, so
 * memory stays flat however large the site. Must run inside a transaction (the caller's
 * read-only snapshot). The legacy key is wrapped in a Secret the moment it arrives and only its
 * fingerprint leaves.
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
    hasEmail: row.has_email,
    hasLegacyKey: key !== undefined,
    id: row.id,
    isSysadmin: row.sysadmin === true,
    keyFingerprint: key?.fingerprint() ?? '',
    lastTokenUse: row.last_use ?? '',
    name: row.name,
    state: row.state,
  }
}

/** Counts per user state, e.g. {active: 10, deleted: 2, pending: 1}. */
export type StateCounts = Record<string, number>

export type UserSummary = {
  apiTokens: {neverUsed: number; total: number; users: number}
  legacyKeys: StateCounts & {total: number}
  users: StateCounts & {sysadmins: number; total: number}
}

export type UserFindingsOptions = {
  /** False when 2.10's unique index on active emails exists: duplicates cannot exist then. */
  checkDuplicateEmails: boolean
  hasApiTokenTable: boolean
  /** ckan.site_id: the site user always holds a key and is never a person. */
  siteUserName: string
}

/**
 * A UUID, exactly, tested cheaply (a full UUID regex costs PostgreSQL about 1.5 µs per key): dashes
 * at 9, 14, 19 and 24 (LIKE), only hex digits and dashes, and no other dash (32 digits left).
 */
const isUuidSql = (column: string) =>
  `(${column} LIKE '________-____-____-____-____________' AND ${column} ~ '^[0-9A-Fa-f-]+$' AND length(replace(${column}, '-', '')) = 32)`

/**
 * The predicates of the per-user findings, over "user" u ($1 = the site user's name). Token
 * membership uses `u.id IN (SELECT user_id FROM api_token)`, which PostgreSQL runs as one hashed
 * subplan: api_token has no index on user_id.
 */
const userPredicates = (hasApiTokenTable: boolean) => {
  const hasKey = `(u.apikey IS NOT NULL AND u.apikey <> '')`
  const hasTokens = hasApiTokenTable ? '(u.id IN (SELECT user_id FROM api_token))' : 'false'
  const hasUnused = hasApiTokenTable ? '(u.id IN (SELECT user_id FROM api_token WHERE last_access IS NULL))' : 'false'
  const activePerson = `(u.state = 'active' AND u.name <> $1)`
  return {
    apiTokens: hasTokens,
    keyHoldersWithTokens: `${hasKey} AND ${hasTokens}`,
    keys: hasKey,
    keysNotUuid: `${hasKey} AND NOT ${isUuidSql('u.apikey')}`,
    keysWithoutToken: `${hasKey} AND ${activePerson} AND NOT ${hasTokens}`,
    neverUsed: hasUnused,
    siteUserKey: `${hasKey} AND u.name = $1`,
    sysadminKeys: `${hasKey} AND ${activePerson} AND u.sysadmin`,
    withoutEmail: `${activePerson} AND (u.email IS NULL OR u.email = '')`,
    withoutEmailWithKey: `${activePerson} AND (u.email IS NULL OR u.email = '') AND ${hasKey}`,
  }
}

type PredicateName = keyof ReturnType<typeof userPredicates>

/** Key values held by more than one user, with how many hold each (computed once, in PostgreSQL). */
const DUPLICATE_KEYS = `
  SELECT apikey AS value, count(*) AS holders FROM "user"
  WHERE apikey IS NOT NULL AND apikey <> '' GROUP BY apikey HAVING count(*) > 1`

/** Emails shared by active users: what CKAN 2.10's unique index idx_only_one_active_email refuses. */
const DUPLICATE_EMAILS = `
  SELECT email AS value, count(*) AS holders FROM "user"
  WHERE state = 'active' AND email IS NOT NULL GROUP BY email HAVING count(*) > 1`

/**
 * The counts behind every per-user finding in one pass: flags per user (tokens through one hash
 * join), counted per combination of flags (a few dozen groups, one aggregate step per user).
 */
const countQuery = (hasApiTokenTable: boolean) => `
  SELECT state, sysadmin, is_site_user, has_key, is_uuid, no_email, has_tokens, has_unused, count(*)::int AS users
  FROM (
    SELECT u.state, coalesce(u.sysadmin, false) AS sysadmin, coalesce(u.name = $1, false) AS is_site_user,
           (u.apikey IS NOT NULL AND u.apikey <> '') AS has_key,
           coalesce(${isUuidSql('u.apikey')}, false) AS is_uuid,
           (u.email IS NULL OR u.email = '') AS no_email,
           (t.user_id IS NOT NULL) AS has_tokens, coalesce(t.unused > 0, false) AS has_unused
    FROM "user" u
    LEFT JOIN (${hasApiTokenTable ? 'SELECT user_id, count(*) FILTER (WHERE last_access IS NULL) AS unused FROM api_token GROUP BY user_id' : 'SELECT NULL::text AS user_id, 0 AS unused WHERE false'}) t
      ON t.user_id = u.id
  ) flags
  GROUP BY 1, 2, 3, 4, 5, 6, 7, 8`

type FlagGroup = {
  has_key: boolean
  has_tokens: boolean
  has_unused: boolean
  is_site_user: boolean
  is_uuid: boolean
  no_email: boolean
  state: string
  sysadmin: boolean
  users: number
}

/** The same predicates as userPredicates, over one group of countQuery. */
function groupMatches(group: FlagGroup): Record<PredicateName, boolean> {
  const activePerson = group.state === 'active' && !group.is_site_user
  return {
    apiTokens: group.has_tokens,
    keyHoldersWithTokens: group.has_key && group.has_tokens,
    keys: group.has_key,
    keysNotUuid: group.has_key && !group.is_uuid,
    keysWithoutToken: group.has_key && activePerson && !group.has_tokens,
    neverUsed: group.has_unused,
    siteUserKey: group.has_key && group.is_site_user,
    sysadminKeys: group.has_key && activePerson && group.sysadmin,
    withoutEmail: activePerson && group.no_email,
    withoutEmailWithKey: activePerson && group.no_email && group.has_key,
  }
}

/**
 * Every per-user finding, computed in PostgreSQL: one pass for the counts (grouped by state),
 * one hash aggregate each for duplicate keys and duplicate active emails, and a LIMIT query per
 * finding for its sample (in database order). Nothing per user reaches this process.
 */
export async function collectUserFindings(
  sql: Queryable,
  options: UserFindingsOptions,
): Promise<{findings: AuditFinding[]; summary: UserSummary}> {
  const predicates = userPredicates(options.hasApiTokenTable)
  const names = Object.keys(predicates) as PredicateName[]
  const tokenSums = options.hasApiTokenTable
    ? `(SELECT count(*)::int FROM api_token) AS tokens, (SELECT count(*)::int FROM api_token WHERE last_access IS NULL) AS unused`
    : '0 AS tokens, 0 AS unused'
  const {rows: groups} = await sql.query<FlagGroup>(countQuery(options.hasApiTokenTable), [options.siteUserName])
  const {rows: tokenRows} = await sql.query<{tokens: number; unused: number}>(`SELECT ${tokenSums}`)
  const totals = Object.fromEntries(names.map((name) => [name, 0])) as Record<PredicateName, number>
  const keysByState: StateCounts = {}
  const usersByState: StateCounts = {}
  let sysadmins = 0
  for (const group of groups) {
    const matches = groupMatches(group)
    for (const name of names) if (matches[name]) totals[name] += group.users
    usersByState[group.state] = (usersByState[group.state] ?? 0) + group.users
    if (group.has_key) keysByState[group.state] = (keysByState[group.state] ?? 0) + group.users
    if (group.state === 'active' && group.sysadmin) sysadmins += group.users
  }
  const total = (name: PredicateName) => totals[name]
  const samples = await sampleNames(sql, names.filter((name) => total(name) > 0).map((name) => [name, predicates[name]]), options.siteUserName)

  const duplicateKeys = await countAndSample(sql, DUPLICATE_KEYS, 'u.apikey IN (SELECT value FROM duplicated)')
  const duplicateEmails = options.checkDuplicateEmails
    ? await countAndSample(sql, DUPLICATE_EMAILS, `u.state = 'active' AND u.email IN (SELECT value FROM duplicated)`)
    : {count: 0, sample: []}

  const tokens = tokenRows[0]!
  const count = (name: PredicateName) => total(name)
  const sample = (name: PredicateName) => samples.get(name) ?? []
  const candidates: AuditFinding[] = [
    {
      count: count('keys'),
      details: {...keysByState},
      fix: 'Give each holder an API token with ckan-migrate issue-tokens, then clear the keys with ckan-migrate purge-keys.',
      id: 'legacy-keys',
      sample: sample('keys'),
      severity: 'info',
      title: `${count('keys')} users hold a legacy API key (${describeStates(keysByState)})`,
    },
    {
      count: count('keysWithoutToken'),
      fix: 'Run ckan-migrate issue-tokens so each of them has an API token before the upgrade: CKAN 2.10 ignores legacy keys.',
      id: 'legacy-keys-without-token',
      sample: sample('keysWithoutToken'),
      severity: 'blocker',
      title: `${count('keysWithoutToken')} active users hold a legacy key and no API token: their scripts stop working on 2.10`,
    },
    {
      count: count('sysadminKeys'),
      fix: 'Issue these sysadmins tokens first and clear their keys soon after: a sysadmin key is full control of the site on 2.9.',
      id: 'sysadmin-legacy-keys',
      sample: sample('sysadminKeys'),
      severity: 'warning',
      title: `${count('sysadminKeys')} active sysadmins hold a legacy key`,
    },
    {
      count: count('siteUserKey'),
      details: {siteUser: options.siteUserName},
      fix: 'Leave it while CKAN 2.9 runs DataPusher or XLoader without their token settings; clear it after the upgrade (2.10 ignores it).',
      id: 'site-user-legacy-key',
      sample: sample('siteUserKey'),
      severity: 'info',
      title: `The site user ${options.siteUserName} holds a legacy key (CKAN gives it one; 2.9 services may use it)`,
    },
    {
      count: count('keysNotUuid'),
      fix: 'These keys were set by hand or by a plugin: find out which client sends them, give it a token, then clear the keys.',
      id: 'legacy-keys-not-uuid',
      sample: sample('keysNotUuid'),
      severity: 'warning',
      title: `${count('keysNotUuid')} legacy keys are not UUIDs`,
    },
    {
      count: duplicateKeys.count,
      fix: 'Users sharing a key cannot be told apart on 2.9 (the first match wins): issue each a token, then clear these keys with ckan-migrate purge-keys.',
      id: 'legacy-keys-duplicated',
      sample: duplicateKeys.sample,
      severity: 'warning',
      title: `${duplicateKeys.count} users hold a legacy key that another user also holds`,
    },
    {
      count: count('keyHoldersWithTokens'),
      fix: 'Check that their clients use the token, then clear the keys with ckan-migrate purge-keys.',
      id: 'legacy-key-holders-with-tokens',
      sample: sample('keyHoldersWithTokens'),
      severity: 'info',
      title: `${count('keyHoldersWithTokens')} users with a legacy key already have API tokens`,
    },
    {
      count: tokens.tokens,
      details: {users: count('apiTokens')},
      fix: 'Nothing to do: tokens keep working after the upgrade as long as the JWT secret stays the same.',
      id: 'api-tokens',
      sample: sample('apiTokens'),
      severity: 'info',
      title: `${tokens.tokens} API tokens exist, held by ${count('apiTokens')} users`,
    },
    {
      count: tokens.unused,
      details: {users: count('neverUsed')},
      fix: 'Ask the holders whether they still need them; revoke the ones nobody uses.',
      id: 'api-tokens-never-used',
      sample: sample('neverUsed'),
      severity: 'info',
      title: `${tokens.unused} API tokens were never used (held by ${count('neverUsed')} users)`,
    },
    {
      count: count('withoutEmail'),
      details: {withLegacyKey: count('withoutEmailWithKey')},
      fix: 'Add an email address for each (the user edit page) or hand their access bundle over another way.',
      id: 'users-without-email',
      sample: sample('withoutEmail'),
      severity: 'warning',
      title: `${count('withoutEmail')} active users have no email address, so no access bundle can be mailed to them`,
    },
    {
      count: duplicateEmails.count,
      fix: 'Give each active user its own email address or delete the duplicates (ckan db duplicate_emails lists them): CKAN 2.10 migration 102 adds a unique index on active emails and fails otherwise.',
      id: 'duplicate-active-emails',
      sample: duplicateEmails.sample,
      severity: 'blocker',
      title: `${duplicateEmails.count} active users share an email address with another active user`,
    },
  ]
  const sum = (counts: StateCounts) => Object.values(counts).reduce((total_, value) => total_ + value, 0)
  return {
    findings: candidates.filter((finding) => finding.count > 0),
    summary: {
      apiTokens: {neverUsed: tokens.unused, total: tokens.tokens, users: count('apiTokens')},
      legacyKeys: {active: 0, deleted: 0, pending: 0, ...keysByState, total: sum(keysByState)},
      users: {active: 0, deleted: 0, pending: 0, ...usersByState, sysadmins, total: sum(usersByState)},
    },
  }
}

/** Up to SAMPLE_SIZE names per predicate, in one round trip (each branch stops at its LIMIT). */
async function sampleNames(sql: Queryable, predicates: Array<[string, string]>, siteUserName: string): Promise<Map<string, string[]>> {
  const samples = new Map<string, string[]>()
  if (predicates.length === 0) return samples
  const branches = predicates.map(
    ([, predicate], index) => `(SELECT ${index} AS finding, array_agg(name) AS names FROM (SELECT u.name FROM "user" u WHERE ${predicate} LIMIT ${SAMPLE_SIZE}) s)`,
  )
  const {rows} = await sql.query<{finding: number; names: null | string[]}>(branches.join('\nUNION ALL\n'), [siteUserName])
  for (const row of rows) samples.set(predicates[row.finding]![0], row.names ?? [])
  return samples
}

/** Users holding a duplicated value: counted from the aggregate, sampled by a scan that stops at SAMPLE_SIZE. */
async function countAndSample(sql: Queryable, duplicates: string, predicate: string): Promise<{count: number; sample: string[]}> {
  const {rows} = await sql.query<{count: number; sample: null | string[]}>(
    `WITH duplicated AS MATERIALIZED (${duplicates})
     SELECT (SELECT coalesce(sum(holders), 0)::int FROM duplicated) AS count,
            (SELECT array_agg(name) FROM (SELECT u.name FROM "user" u WHERE ${predicate} LIMIT ${SAMPLE_SIZE}) s) AS sample`,
  )
  return {count: rows[0]!.count, sample: rows[0]!.sample ?? []}
}

function describeStates(counts: StateCounts): string {
  const parts = Object.entries(counts)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([state, count]) => `${count} ${state}`)
  return parts.join(', ') || 'none'
}
