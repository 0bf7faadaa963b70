import type {Queryable} from '../site/ckan-database.js'
import {SAMPLE_SIZE} from './audit-finding.js'
import type {ActivityBuckets, ExpiryBuckets} from './readiness-breakdown.js'

/**
 * The audit's statements over "user" (docs/commands/audit.md, "Speed").
 *
 * 1. The census: what every user is (state, sysadmin, site user, email, key, UUID key, key holder
 *    with tokens), the token counts, and the hashes (ValueHash) that more than one key or active
 *    email share. Each part is one branch of a UNION ALL that PostgreSQL runs as a Parallel Append: a
 *    whole branch per process, so nothing funnels through the leader's merge. The branches sort
 *    (hash aggregation is off for the statement): a sort of bare 8-byte hashes beats a hash table
 *    holding a group for each of a million unique values.
 * 2. For each kind whose census found shared hashes, the exact count by value (countDuplicates).
 * 3. Up to SAMPLE_SIZE names for each finding that exists (sampleNames).
 *
 * For the readiness page (audit --html) the same census also sorts every user by whether they hold
 * a token and, for key holders, by their latest sign of life, and counts tokens by expiry
 * (`breakdown`): one pass over "user" for both, where a statement of its own cost the page about a
 * sixth of the audit's time (docs/benchmarks.md, the readiness page).
 */

/** A user as the census sees it: one combination of flags. */
export type FlagGroup = {
  hasKey: boolean
  isSiteUser: boolean
  /** Key holders only: the key is a UUID. */
  isUuid: boolean
  /** Key holders only: the user also has at least one API token. */
  keyHasTokens: boolean
  noEmail: boolean
  state: string
  sysadmin: boolean
  users: number
  /** With `breakdown` only: the user holds at least one API token. */
  hasTokens?: boolean
  /** With `breakdown` only, key holders only: the bucket of their latest sign of life. */
  seen?: keyof ActivityBuckets
}

export type TokenCounts = {
  /** Users holding at least one token. */
  holders: number
  /** The ids of the first SAMPLE_SIZE holders, and of the first holders of a token never used. */
  sampleIds: {holders: string[]; unusedHolders: string[]}
  tokens: number
  /** Tokens with no last_access. */
  unused: number
  /** Users holding at least one token never used. */
  unusedHolders: number
}

/** The values checked for duplicates: legacy keys, and (before 2.10's unique index) active users' emails. */
export const DUPLICATE_KINDS = {
  emails: {column: 'email', where: `u.state = 'active' AND u.email IS NOT NULL`},
  keys: {column: 'apikey', where: `u.apikey <> ''`},
} as const

export type DuplicateKind = keyof typeof DUPLICATE_KINDS

export type Census = {
  /** Per kind: the hashes (int8 as decimal text) that more than one value of that kind has. */
  duplicateHashes: Record<DuplicateKind, string[]>
  groups: FlagGroup[]
  /** With `breakdown` only: API tokens by expiry. */
  tokenExpiry?: ExpiryBuckets
  tokens: TokenCounts
}

/**
 * What the readiness page's figures read a key holder's latest sign of life from: their tokens'
 * last use (only when some token was ever used), the newest activity row they made (only when
 * the activity table holds any), and on 2.10+ user.last_active. Asking the census for it
 * (`breakdown`) adds the figures' bits to its flags.
 */
export type BreakdownColumns = {activityRows: boolean; lastActive: boolean; tokensUsed: boolean}

/**
 * A UUID, exactly, tested cheaply (a full UUID regex costs PostgreSQL about 1.5 µs per key): dashes
 * at 9, 14, 19 and 24 (LIKE), no fifth dash (NOT LIKE), and no character that is neither a hex digit
 * nor a dash (a negated character class, which stops at the first offending character).
 */
export const isUuidSql = (column: string) =>
  `(${column} LIKE '________-____-____-____-____________' AND ${column} NOT LIKE '%-%-%-%-%-%' AND ${column} !~ '[^0-9A-Fa-f-]')`

/**
 * How the census hashes a key or an email (an SQL expression of type bigint over "user" u's
 * column). Any hash will do for correctness, since equal values always share it and the exact
 * check tells apart different values that share one; a wide hash just leaves it little to do.
 */
export type ValueHash = (column: string) => string

/** PostgreSQL 11+: 64 bits, so among a million values two different ones share a hash about once in 37 million audits. */
export const HASH_64: ValueHash = (column) => `hashtextextended(u.${column}, 0)`
/** PostgreSQL 10 and older have only the 32-bit hashtext: more shared hashes, all of them checked by value. */
export const HASH_32: ValueHash = (column) => `hashtext(u.${column})::bigint`

/** The value hash for a server, from server_version_num. */
export const valueHashFor = (serverVersionNum: number): ValueHash => (serverVersionNum >= 110_000 ? HASH_64 : HASH_32)

/** The states CKAN gives users, coded in the flags' low two bits; 3 stands for any other state. */
const KNOWN_STATES = ['active', 'pending', 'deleted'] as const
const OTHER_STATE = 3
const FLAG = {keyHasTokens: 128, hasKey: 32, isSiteUser: 8, isUuid: 64, noEmail: 16, sysadmin: 4} as const
/** With `breakdown`: any user holding a token, and (key holders) the sign-of-life bucket, SEEN_BY_RECENCY's index times SEEN_UNIT. */
const BREAKDOWN_FLAG = {hasTokens: 256} as const
const SEEN_UNIT = 512
const SEEN_BY_RECENCY = ['days30', 'days90', 'days365', 'older', 'never'] as const satisfies ReadonlyArray<
  keyof ActivityBuckets
>
/** Tokens by the expiry expire_api_token stored, coded by index in the census's expiry branch. */
const EXPIRY_BUCKETS = ['never', 'expired', 'days7', 'days30', 'later'] as const satisfies ReadonlyArray<
  keyof ExpiryBuckets
>
const HOLDS_A_TOKEN = 'u.id IN (SELECT user_id FROM api_token)'

/**
 * One integer per user ($1 = the site user's name): grouping by a single int sorts as bare
 * datums, where grouping by seven columns (or by the state text) costs twice as much. Token
 * membership is looked up, as one hashed subplan (api_token has no index on user_id), only for
 * key holders: the only findings that combine keys and tokens. (With `breakdown` the test is made
 * once for every user by breakdownFlags instead, which sets keyHasTokens too: keyHolderTokens false.)
 */
const flagsSql = (hasApiTokenTable: boolean, keyHolderTokens = hasApiTokenTable) => `
  (CASE u.state ${KNOWN_STATES.map((state, code) => `WHEN '${state}' THEN ${code}`).join(' ')} ELSE ${OTHER_STATE} END)
  | (CASE WHEN u.sysadmin THEN ${FLAG.sysadmin} ELSE 0 END)
  | (CASE WHEN u.name = $1 THEN ${FLAG.isSiteUser} ELSE 0 END)
  | (CASE WHEN u.email IS NULL OR u.email = '' THEN ${FLAG.noEmail} ELSE 0 END)
  | (CASE WHEN u.apikey <> '' THEN ${FLAG.hasKey}
       | (CASE WHEN ${isUuidSql('u.apikey')} THEN ${FLAG.isUuid} ELSE 0 END)
       | ${keyHolderTokens ? `(CASE WHEN ${HOLDS_A_TOKEN} THEN ${FLAG.keyHasTokens} ELSE 0 END)` : '0'}
     ELSE 0 END)`

/** The census's columns: every branch returns all of them, with these types, so the planner can run the UNION ALL as one Parallel Append. */
const CENSUS_COLUMNS = {
  kind: 'text',
  flags: 'int',
  count: 'bigint',
  unused: 'bigint',
  holders: 'bigint',
  unused_holders: 'bigint',
  hashes: 'bigint[]',
  holder_ids: 'text[]',
  unused_holder_ids: 'text[]',
} as const

const censusBranch = (values: Partial<Record<keyof typeof CENSUS_COLUMNS, string>>, rest: string) =>
  `SELECT ${Object.entries(CENSUS_COLUMNS)
    .map(([name, type]) => `(${values[name as keyof typeof CENSUS_COLUMNS] ?? 'NULL'})::${type} AS ${name}`)
    .join(', ')}
   ${rest}`

/**
 * The census's flags for the readiness page (readiness-breakdown.ts), over "user" u: every
 * user's token holding, and each key holder's latest sign of life, coded by recency (SEEN_BY_RECENCY)
 * as the most recent of their tokens' last use, their newest activity row and (2.10+)
 * user.last_active, at the database's clock (UTC, the transaction's start). Everything is a
 * membership test against a set of user ids built once per process (an uncorrelated hashed
 * subplan, which keeps the census's Parallel Append: a correlated subquery would run it all in
 * the leader; api_token has no index on user_id anyway), asked only of the users it can change:
 * token recency only of key holders holding one, the finer bounds only of those with any row.
 * A test against an empty set costs nothing, so on a site without activity rows the figures cost
 * about one test per user (docs/benchmarks.md, the readiness page).
 */
const breakdownFlags = (breakdown: BreakdownColumns) => {
  const now = `(now() AT TIME ZONE 'UTC')`
  const days = (count: number) => `${now} - interval '${count} days'`
  /** The recency code (an index of SEEN_BY_RECENCY) of a timestamp expression. */
  const recency = (seen: string) =>
    `CASE WHEN ${seen} >= ${days(30)} THEN 0 WHEN ${seen} >= ${days(90)} THEN 1 WHEN ${seen} >= ${days(365)} THEN 2
          WHEN ${seen} IS NOT NULL THEN 3 ELSE 4 END`
  /** Recency by sets of the users with a row in `table` whose `column` is that recent: each built once, when first asked. */
  const recencyBySets = (table: string, column: string) => {
    const since = (bound: string) => `u.id IN (SELECT user_id FROM ${table} WHERE ${bound})`
    return `CASE WHEN ${since(`${column} IS NOT NULL`)}
               THEN (CASE WHEN ${since(`${column} >= ${days(30)}`)} THEN 0 WHEN ${since(`${column} >= ${days(90)}`)} THEN 1
                          WHEN ${since(`${column} >= ${days(365)}`)} THEN 2 ELSE 3 END)
               ELSE 4 END`
  }
  const tokenRecency = breakdown.tokensUsed ? [recencyBySets('api_token', 'last_access')] : []
  const codes = [
    ...(breakdown.activityRows ? [recencyBySets('activity', '"timestamp"')] : []),
    ...(breakdown.lastActive ? [recency('u.last_active')] : []),
  ]
  const seen = (withTokens: boolean) => {
    const all = [...(withTokens ? tokenRecency : []), ...codes]
    return `${SEEN_UNIT} * ${all.length === 0 ? 4 : all.length === 1 ? `(${all[0]})` : `least(${all.join(', ')})`}`
  }
  // One membership test a user: it also sets keyHasTokens, which flagsSql leaves out here.
  return `CASE WHEN ${HOLDS_A_TOKEN}
               THEN ${BREAKDOWN_FLAG.hasTokens} | (CASE WHEN u.apikey <> '' THEN ${FLAG.keyHasTokens} | ${seen(true)} ELSE 0 END)
               ELSE (CASE WHEN u.apikey <> '' THEN ${seen(false)} ELSE 0 END) END`
}

/**
 * Tokens by expiry (expire_api_token's plugin_extras.expire_api_token.exp), coded as
 * EXPIRY_BUCKETS. The ISO 8601 text CKAN stores is compared as text with the boundaries in the
 * same layout: a malformed value can never fail the audit (it counts as never expiring).
 */
const EXPIRY_CODE = `CASE WHEN e.exp IS NULL THEN 0 WHEN e.exp < b.now_text THEN 1 WHEN e.exp < b.in7 THEN 2
                          WHEN e.exp < b.in30 THEN 3 ELSE 4 END`
const EXPIRY_FROM = `(SELECT CASE WHEN plugin_extras -> 'expire_api_token' ->> 'exp' ~ '^\\d{4}-\\d\\d-\\d\\d'
                              THEN plugin_extras -> 'expire_api_token' ->> 'exp' END AS exp FROM api_token) e
  CROSS JOIN (SELECT to_char(now_utc, 'YYYY-MM-DD"T"HH24:MI:SS') AS now_text,
                     to_char(now_utc + interval '7 days', 'YYYY-MM-DD"T"HH24:MI:SS') AS in7,
                     to_char(now_utc + interval '30 days', 'YYYY-MM-DD"T"HH24:MI:SS') AS in30
              FROM (SELECT now() AT TIME ZONE 'UTC' AS now_utc) n) b`

/** The census statement: flag counts, shared hashes per duplicate kind, and token counts with the first holders' ids (and with `breakdown`, tokens by expiry). */
const censusQuery = (options: {
  breakdown?: BreakdownColumns
  duplicateKinds: DuplicateKind[]
  hasApiTokenTable: boolean
  valueHash: ValueHash
}) => {
  const {breakdown} = options
  const branches = [
    censusBranch(
      {count: 'count(*)', flags: 'flags', kind: "'flags'"},
      `FROM (SELECT ${flagsSql(options.hasApiTokenTable, options.hasApiTokenTable && !breakdown)}${breakdown ? ` | (${breakdownFlags(breakdown)})` : ''} AS flags
             FROM "user" u) f GROUP BY flags`,
    ),
    ...options.duplicateKinds.map((kind) => {
      const {column, where} = DUPLICATE_KINDS[kind]
      return censusBranch(
        {count: 'coalesce(sum(holders), 0)', hashes: 'array_agg(h)', kind: `'${kind}'`},
        `FROM (SELECT ${options.valueHash(column)} AS h, count(*) AS holders
               FROM "user" u WHERE ${where} GROUP BY 1 HAVING count(*) > 1) shared`,
      )
    }),
  ]
  // Grouped by holder first (one small sort) rather than count(DISTINCT), which sorts twice. The
  // first holders' ids give two samples without a membership test against api_token later.
  if (options.hasApiTokenTable) {
    branches.push(
      censusBranch(
        {
          count: 'coalesce(sum(tokens), 0)',
          holder_ids: `(array_agg(user_id))[1:${SAMPLE_SIZE}]`,
          holders: 'count(*)',
          kind: "'tokens'",
          unused: 'coalesce(sum(unused), 0)',
          unused_holder_ids: `(array_agg(user_id) FILTER (WHERE unused > 0))[1:${SAMPLE_SIZE}]`,
          unused_holders: 'count(*) FILTER (WHERE unused > 0)',
        },
        `FROM (SELECT user_id, count(*) AS tokens, count(*) FILTER (WHERE last_access IS NULL) AS unused
               FROM api_token GROUP BY user_id) holders`,
      ),
    )
  }
  if (breakdown) {
    branches.push(
      censusBranch({count: 'count(*)', flags: EXPIRY_CODE, kind: "'expiry'"}, `FROM ${EXPIRY_FROM} GROUP BY 2`),
    )
  }
  return `SELECT * FROM (${branches.join('\nUNION ALL\n')}) census`
}

/** Users in states other than active, pending and deleted, which the census codes as one: rare, so counted apart. */
const otherStatesQuery = (hasApiTokenTable: boolean) => `
  SELECT u.state, (${flagsSql(hasApiTokenTable)}) AS flags, count(*)::bigint AS count
  FROM "user" u WHERE u.state NOT IN (${KNOWN_STATES.map((state) => `'${state}'`).join(', ')})
  GROUP BY 1, 2`

type CensusRow = {
  count: string
  flags: null | number
  hashes: null | string[]
  holder_ids: null | string[]
  holders: null | string
  kind: 'expiry' | 'flags' | 'tokens' | DuplicateKind
  unused: null | string
  unused_holder_ids: null | string[]
  unused_holders: null | string
}

/**
 * Planner settings for the census, local to the transaction and put back afterwards (the exact
 * check, the samples, the CSV's COPY and the service checks run in the same transaction): whole
 * branches per process (no partial scans, so a branch is never split across workers and merged
 * in the leader), parallel plans priced at nothing (otherwise the planner keeps everything in
 * the leader), and sorting instead of hash aggregation.
 */
const AUDIT_PLANNER_SETTINGS = {
  enable_hashagg: 'off',
  min_parallel_table_scan_size: '1TB',
  parallel_setup_cost: '0',
  parallel_tuple_cost: '0',
} as const

async function withAuditPlanner<T>(sql: Queryable, run: () => Promise<T>): Promise<T> {
  const names = Object.keys(AUDIT_PLANNER_SETTINGS)
  const setAll = (values: readonly string[]) =>
    sql.query(
      `SELECT ${names.map((_, index) => `set_config($${2 * index + 1}, $${2 * index + 2}, true)`).join(', ')}`,
      names.flatMap((name, index) => [name, values[index]!]),
    )
  const {rows} = await sql.query<{saved: string[]}>(
    `SELECT ARRAY[${names.map((_, index) => `current_setting($${index + 1})`).join(', ')}] AS saved`,
    names,
  )
  await setAll(Object.values(AUDIT_PLANNER_SETTINGS))
  try {
    return await run()
  } finally {
    // Fails only when the transaction already failed; its rollback discards the settings then.
    await setAll(rows[0]!.saved).catch(() => {})
  }
}

/** Runs the census ($1 = the site user's name). Must run inside the audit's read-only transaction. */
export async function takeCensus(
  sql: Queryable,
  options: {
    /** Also the readiness page's figures (see BreakdownColumns); needs api_token (2.9+). */
    breakdown?: BreakdownColumns
    duplicateKinds: DuplicateKind[]
    hasApiTokenTable: boolean
    siteUserName: string
    valueHash: ValueHash
  },
): Promise<Census> {
  // The figures' bits need api_token (every census since 2.9 has it).
  const breakdown = options.hasApiTokenTable ? options.breakdown : undefined
  const {rows} = await withAuditPlanner(sql, () =>
    sql.query<CensusRow>(censusQuery({...options, breakdown}), [options.siteUserName]),
  )
  const census: Census = {
    duplicateHashes: {emails: [], keys: []},
    groups: [],
    tokens: {holders: 0, sampleIds: {holders: [], unusedHolders: []}, tokens: 0, unused: 0, unusedHolders: 0},
  }
  if (breakdown) census.tokenExpiry = Object.fromEntries(EXPIRY_BUCKETS.map((bucket) => [bucket, 0])) as ExpiryBuckets
  let otherStates = false
  for (const row of rows) {
    if (row.kind === 'expiry') {
      census.tokenExpiry![EXPIRY_BUCKETS[row.flags!]!] += Number(row.count)
    } else if (row.kind === 'flags') {
      if ((row.flags! & OTHER_STATE) === OTHER_STATE) otherStates = true
      else
        census.groups.push(
          toFlagGroup(KNOWN_STATES[row.flags! & OTHER_STATE]!, row.flags!, Number(row.count), Boolean(breakdown)),
        )
    } else if (row.kind === 'tokens') {
      census.tokens = {
        holders: Number(row.holders),
        sampleIds: {holders: row.holder_ids ?? [], unusedHolders: row.unused_holder_ids ?? []},
        tokens: Number(row.count),
        unused: Number(row.unused),
        unusedHolders: Number(row.unused_holders),
      }
    } else {
      census.duplicateHashes[row.kind] = row.hashes ?? []
    }
  }
  if (otherStates) {
    const {rows: others} = await sql.query<{count: string; flags: number; state: string}>(
      otherStatesQuery(options.hasApiTokenTable),
      [options.siteUserName],
    )
    for (const row of others) census.groups.push(toFlagGroup(row.state, row.flags, Number(row.count)))
  }
  return census
}

function toFlagGroup(state: string, flags: number, users: number, breakdown = false): FlagGroup {
  const has = (flag: number) => (flags & flag) !== 0
  return {
    ...(breakdown && {
      hasTokens: has(BREAKDOWN_FLAG.hasTokens),
      ...(has(FLAG.hasKey) && {seen: SEEN_BY_RECENCY[Math.floor(flags / SEEN_UNIT)]}),
    }),
    hasKey: has(FLAG.hasKey),
    isSiteUser: has(FLAG.isSiteUser),
    isUuid: has(FLAG.isUuid),
    keyHasTokens: has(FLAG.keyHasTokens),
    noEmail: has(FLAG.noEmail),
    state,
    sysadmin: has(FLAG.sysadmin),
    users,
  }
}

export type Duplicates = {count: number; sample: string[]}

/**
 * For each kind with shared hashes, the users holding a value another user also holds, counted
 * by the value itself: equal values always share a hash, and two different values that share
 * one (a 64-bit collision, by chance or crafted) are told apart here. One ordinary parallel scan
 * for both kinds (the workers test each row's hashes against the shared ones; only the few
 * matching rows reach the leader), then the matches grouped by value, once per kind
 * ($1 = the shared key hashes, $2 = the shared email hashes). The sample is the first
 * SAMPLE_SIZE names of the first groups.
 */
export async function countDuplicates(
  sql: Queryable,
  duplicateHashes: Record<DuplicateKind, string[]>,
  valueHash: ValueHash,
): Promise<Record<DuplicateKind, Duplicates>> {
  const found: Record<DuplicateKind, Duplicates> = {emails: {count: 0, sample: []}, keys: {count: 0, sample: []}}
  const kinds = (Object.keys(DUPLICATE_KINDS) as DuplicateKind[]).filter((kind) => duplicateHashes[kind].length > 0)
  if (kinds.length === 0) return found
  const matches = (kind: DuplicateKind) =>
    `(${valueHash(DUPLICATE_KINDS[kind].column)} = ANY($${kinds.indexOf(kind) + 1}::bigint[]) AND ${DUPLICATE_KINDS[kind].where})`
  const {rows} = await sql.query<{count: number; kind: DuplicateKind; names: null | string[]}>(
    `SELECT kind, coalesce(sum(holders) FILTER (WHERE x.ord = 1), 0)::int AS count, (array_agg(x.name))[1:${SAMPLE_SIZE}] AS names
     FROM (SELECT ${kinds.length === 1 ? `'${kinds[0]}'::text` : `CASE WHEN GROUPING(${kinds[0]}) = 0 THEN '${kinds[0]}' ELSE '${kinds[1]}' END`} AS kind,
                  count(*) AS holders, (array_agg(name))[1:${SAMPLE_SIZE}] AS names
           FROM (SELECT u.name, ${kinds.map((kind) => `CASE WHEN ${matches(kind)} THEN u.${DUPLICATE_KINDS[kind].column} END AS ${kind}`).join(', ')}
                 FROM "user" u WHERE ${kinds.map(matches).join(' OR ')}) m
           GROUP BY GROUPING SETS (${kinds.map((kind) => `(${kind})`).join(', ')})
           HAVING count(*) > 1 AND (${kinds.map((kind) => `${kind} IS NOT NULL`).join(' OR ')})) g
     CROSS JOIN LATERAL unnest(g.names) WITH ORDINALITY AS x(name, ord)
     GROUP BY kind`,
    kinds.map((kind) => duplicateHashes[kind]),
  )
  for (const row of rows) found[row.kind] = {count: row.count, sample: row.names ?? []}
  return found
}

/**
 * Up to SAMPLE_SIZE names for each finding ($1 = the site user's name): the first rows of "user" u
 * matching its predicate, in one round trip. Each branch stops at its LIMIT, which is the
 * finding's count when that is smaller: otherwise a finding with fewer matches than SAMPLE_SIZE
 * would read the whole table. Findings counted 0 get no branch. (A LIMIT keeps a branch out of
 * parallel plans; these are short.)
 */
export async function sampleNames(
  sql: Queryable,
  findings: Array<{count: number; name: string; predicate: string}>,
  siteUserName: string,
): Promise<Map<string, string[]>> {
  const samples = new Map<string, string[]>()
  const wanted = findings.filter((finding) => finding.count > 0)
  if (wanted.length === 0) return samples
  const text = wanted
    .map(
      ({count, predicate}, index) =>
        `(SELECT ${index} AS finding, array_agg(name) AS names
          FROM (SELECT u.name FROM "user" u WHERE ${predicate} LIMIT ${Math.min(SAMPLE_SIZE, count)}) s)`,
    )
    .join('\nUNION ALL\n')
  // $1 only when a branch names the site user: PostgreSQL refuses a parameter it cannot type.
  const {rows} = await sql.query<{finding: number; names: null | string[]}>(
    text,
    /\$1(?!\d)/.test(text) ? [siteUserName] : [],
  )
  for (const row of rows) samples.set(wanted[row.finding]!.name, row.names ?? [])
  return samples
}

/** The names of the users with these ids, by id. */
export async function namesOfUsers(sql: Queryable, ids: string[]): Promise<Map<string, string>> {
  if (ids.length === 0) return new Map()
  const {rows} = await sql.query<{id: string; name: string}>('SELECT id, name FROM "user" WHERE id = ANY($1::text[])', [
    ids,
  ])
  return new Map(rows.map((row) => [row.id, row.name]))
}
