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
 * at 9, 14, 19 and 24 (LIKE), no fifth dash (NOT LIKE), and no character that is neither a hex digit
 * nor a dash (a negated character class, which stops at the first offending character).
 */
const isUuidSql = (column: string) =>
  `(${column} LIKE '________-____-____-____-____________' AND ${column} NOT LIKE '%-%-%-%-%-%' AND ${column} !~ '[^0-9A-Fa-f-]')`

/**
 * The predicates of the per-user findings, over "user" u ($1 = the site user's name): what each
 * finding's sample is drawn from. Token membership uses `u.id IN (SELECT user_id FROM api_token)`,
 * which PostgreSQL runs as one hashed subplan: api_token has no index on user_id.
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

/**
 * The counts behind every per-user finding in one parallel pass over "user": flags per user,
 * counted per combination of flags (a few dozen groups; each worker aggregates its share of the
 * table). Token membership is looked up only for key holders (the only findings that combine
 * keys and tokens); users with tokens are counted from api_token itself (tokenCounts).
 */
const countQuery = (hasApiTokenTable: boolean) => `
  SELECT state, sysadmin, is_site_user, has_key, is_uuid, no_email, key_has_tokens, count(*)::int AS users
  FROM (
    SELECT u.state, coalesce(u.sysadmin, false) AS sysadmin, coalesce(u.name = $1, false) AS is_site_user,
           coalesce(u.apikey <> '', false) AS has_key,
           coalesce(${isUuidSql('u.apikey')}, false) AS is_uuid,
           (u.email IS NULL OR u.email = '') AS no_email,
           ${hasApiTokenTable ? `coalesce(u.apikey <> '' AND u.id IN (SELECT user_id FROM api_token), false)` : 'false'} AS key_has_tokens
    FROM "user" u
  ) flags
  GROUP BY 1, 2, 3, 4, 5, 6, 7`

/**
 * Tokens and their holders, from api_token alone. Its user_id references "user".id (a foreign key
 * since CKAN 2.9's first migration), so every holder counted here is a user. Grouped by holder
 * first (one hash table) rather than with count(DISTINCT), which sorts the whole table twice.
 */
const TOKEN_COUNTS = `
  SELECT coalesce(sum(tokens), 0)::int AS tokens, coalesce(sum(unused), 0)::int AS unused,
         count(*)::int AS users, (count(*) FILTER (WHERE unused > 0))::int AS unused_users
  FROM (SELECT user_id, count(*) AS tokens, count(*) FILTER (WHERE last_access IS NULL) AS unused
        FROM api_token GROUP BY user_id) holders`

type FlagGroup = {
  has_key: boolean
  is_site_user: boolean
  is_uuid: boolean
  key_has_tokens: boolean
  no_email: boolean
  state: string
  sysadmin: boolean
  users: number
}

type CountedPredicate = Exclude<PredicateName, 'apiTokens' | 'neverUsed'>

/** The predicates of userPredicates that countQuery counts, over one of its groups. */
function groupMatches(group: FlagGroup): Record<CountedPredicate, boolean> {
  const activePerson = group.state === 'active' && !group.is_site_user
  return {
    keyHoldersWithTokens: group.has_key && group.key_has_tokens,
    keys: group.has_key,
    keysNotUuid: group.has_key && !group.is_uuid,
    keysWithoutToken: group.has_key && activePerson && !group.key_has_tokens,
    siteUserKey: group.has_key && group.is_site_user,
    sysadminKeys: group.has_key && activePerson && group.sysadmin,
    withoutEmail: activePerson && group.no_email,
    withoutEmailWithKey: activePerson && group.no_email && group.has_key,
  }
}

/** The values checked for duplicates: legacy keys, and (before 2.10's unique index) active users' emails. */
const DUPLICATE_KINDS = {
  emails: {column: 'email', where: `u.state = 'active' AND u.email IS NOT NULL`},
  keys: {column: 'apikey', where: `u.apikey IS NOT NULL AND u.apikey <> ''`},
} as const

type DuplicateKind = keyof typeof DUPLICATE_KINDS

/**
 * Users holding a value another user also holds, for each kind, in one statement. Values are
 * grouped by a 64-bit hash (hashtextextended, seed 0) with a sort rather than a hash table (an
 * 8-byte sort key; most values are unique, and a hash table would hold a group for each): equal
 * values always share the hash, so no duplicate is ever missed. A group also compares a second,
 * independent 64-bit hash (seed 1) of its members: when that differs, two different values met on
 * the first hash (`mixed`), and collectDuplicates counts that kind again by the values themselves.
 * The sample is the first SAMPLE_SIZE holders of duplicated values in database order; it is
 * fetched only when duplicates exist (otherwise its scan would read the whole table). Each kind
 * runs as a parallel plan (collectDuplicates makes parallel plans free for this statement): the
 * workers scan, hash and sort their share of the table, the leader merges and groups.
 */
const duplicatesQuery = (kinds: DuplicateKind[]) =>
  kinds
    .map((kind) => {
      const {column, where} = DUPLICATE_KINDS[kind]
      const cte = `dup_${kind}`
      return `(WITH ${cte} AS MATERIALIZED (
         SELECT h, count(*) AS holders, min(h2) <> max(h2) AS mixed
         FROM (SELECT hashtextextended(u.${column}, 0) AS h, hashtextextended(u.${column}, 1) AS h2 FROM "user" u WHERE ${where}) v
         GROUP BY h HAVING count(*) > 1)
       SELECT '${kind}' AS kind, coalesce(sum(holders), 0)::int AS count, coalesce(bool_or(mixed), false) AS mixed,
              CASE WHEN count(*) > 0 THEN (SELECT array_agg(name) FROM (
                SELECT u.name FROM "user" u WHERE ${where} AND hashtextextended(u.${column}, 0) IN (SELECT h FROM ${cte})
                LIMIT ${SAMPLE_SIZE}) s) END AS sample
       FROM ${cte})`
    })
    .join('\nUNION ALL\n')

/** The exact, slower count for a kind where two different values shared a hash: grouped by value. */
const exactDuplicatesQuery = (kind: DuplicateKind) => {
  const {column, where} = DUPLICATE_KINDS[kind]
  return `WITH duplicated AS MATERIALIZED (
      SELECT u.${column} AS value, count(*) AS holders FROM "user" u WHERE ${where} GROUP BY u.${column} HAVING count(*) > 1)
    SELECT (SELECT coalesce(sum(holders), 0)::int FROM duplicated) AS count,
           (SELECT array_agg(name) FROM (SELECT u.name FROM "user" u WHERE ${where} AND u.${column} IN (SELECT value FROM duplicated)
              LIMIT ${SAMPLE_SIZE}) s) AS sample`
}

type Duplicates = {count: number; sample: string[]}

async function collectDuplicates(sql: Queryable, kinds: DuplicateKind[]): Promise<Record<DuplicateKind, Duplicates>> {
  const found: Record<DuplicateKind, Duplicates> = {emails: {count: 0, sample: []}, keys: {count: 0, sample: []}}
  if (kinds.length === 0) return found
  // Sort-based grouping: with most values unique, sorting 8-byte hashes beats a hash table of a
  // million one-member groups by about a factor of two. Parallel plans priced at nothing: otherwise
  // the planner keeps the scan, hashing and sort in the leader (docs/commands/audit.md, "Speed").
  const {rows: saved} = await sql.query<{setup: string; tuple: string}>(
    `SELECT current_setting('parallel_setup_cost') AS setup, current_setting('parallel_tuple_cost') AS tuple`,
  )
  await sql.query('SET LOCAL enable_hashagg = off')
  await sql.query('SET LOCAL parallel_setup_cost = 0')
  await sql.query('SET LOCAL parallel_tuple_cost = 0')
  try {
    const {rows} = await sql.query<{count: number; kind: DuplicateKind; mixed: boolean; sample: null | string[]}>(
      duplicatesQuery(kinds),
    )
    for (const row of rows) found[row.kind] = {count: row.count, sample: row.sample ?? []}
    for (const row of rows.filter((candidate) => candidate.mixed)) {
      await sql.query('SET LOCAL enable_hashagg = on')
      const {rows: exact} = await sql.query<{count: number; sample: null | string[]}>(exactDuplicatesQuery(row.kind))
      found[row.kind] = {count: exact[0]!.count, sample: exact[0]!.sample ?? []}
    }
  } finally {
    await sql.query('SET LOCAL enable_hashagg = on')
    await sql.query(`SELECT set_config('parallel_setup_cost', $1, true), set_config('parallel_tuple_cost', $2, true)`, [
      saved[0]!.setup,
      saved[0]!.tuple,
    ])
  }
  return found
}

/**
 * Every per-user finding, computed in PostgreSQL: one parallel pass for the flag counts, token
 * counts from api_token, one statement finding duplicate keys and duplicate active emails, and
 * one statement sampling (LIMIT 10 per finding, in database order) only the findings that exist.
 * Nothing per user reaches this process.
 */
export async function collectUserFindings(
  sql: Queryable,
  options: UserFindingsOptions,
): Promise<{findings: AuditFinding[]; summary: UserSummary}> {
  const predicates = userPredicates(options.hasApiTokenTable)
  const names = Object.keys(predicates) as PredicateName[]
  const {rows: groups} = await sql.query<FlagGroup>(countQuery(options.hasApiTokenTable), [options.siteUserName])
  const tokens = options.hasApiTokenTable
    ? (await sql.query<{tokens: number; unused: number; unused_users: number; users: number}>(TOKEN_COUNTS)).rows[0]!
    : {tokens: 0, unused: 0, unused_users: 0, users: 0}
  const totals = Object.fromEntries(names.map((name) => [name, 0])) as Record<PredicateName, number>
  totals.apiTokens = tokens.users
  totals.neverUsed = tokens.unused_users
  const keysByState: StateCounts = {}
  const usersByState: StateCounts = {}
  let sysadmins = 0
  for (const group of groups) {
    const matches = groupMatches(group)
    for (const name of Object.keys(matches) as CountedPredicate[]) if (matches[name]) totals[name] += group.users
    usersByState[group.state] = (usersByState[group.state] ?? 0) + group.users
    if (group.has_key) keysByState[group.state] = (keysByState[group.state] ?? 0) + group.users
    if (group.state === 'active' && group.sysadmin) sysadmins += group.users
  }
  const total = (name: PredicateName) => totals[name]
  const duplicates = await collectDuplicates(sql, options.checkDuplicateEmails ? ['keys', 'emails'] : ['keys'])
  const samples = await sampleNames(
    sql,
    names.filter((name) => total(name) > 0).map((name) => [name, predicates[name]]),
    options.siteUserName,
  )
  const duplicateKeys = duplicates.keys
  const duplicateEmails = duplicates.emails

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
async function sampleNames(
  sql: Queryable,
  predicates: Array<[string, string]>,
  siteUserName: string,
): Promise<Map<string, string[]>> {
  const samples = new Map<string, string[]>()
  if (predicates.length === 0) return samples
  const branches = predicates.map(
    ([, predicate], index) =>
      `(SELECT ${index} AS finding, array_agg(name) AS names FROM (SELECT u.name FROM "user" u WHERE ${predicate} LIMIT ${SAMPLE_SIZE}) s)`,
  )
  const {rows} = await sql.query<{finding: number; names: null | string[]}>(branches.join('\nUNION ALL\n'), [
    siteUserName,
  ])
  for (const row of rows) samples.set(predicates[row.finding]![0], row.names ?? [])
  return samples
}

function describeStates(counts: StateCounts): string {
  const parts = Object.entries(counts)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([state, count]) => `${count} ${state}`)
  return parts.join(', ') || 'none'
}
