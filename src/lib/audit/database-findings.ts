import {type Queryable, serverVersionNum} from '../site/ckan-database.js'
import type {CkanDatabaseShape, CkanVersion} from '../site/ckan-version.js'
import {Secret} from '../secret.js'
import type {AuditFinding} from './audit-finding.js'
import {
  type BreakdownColumns,
  type Census,
  countDuplicates,
  type FlagGroup,
  isUuidSql,
  namesOfUsers,
  sampleNames,
  takeCensus,
  type ValueHash,
  valueHashFor,
} from './user-census.js'

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
  /** The readiness page's figures are counted by the same census (audit --html): user-census.ts. */
  breakdown?: BreakdownColumns
  /** False when 2.10's unique index on active emails exists: duplicates cannot exist then. */
  checkDuplicateEmails: boolean
  hasApiTokenTable: boolean
  /** Called with the census as soon as it is taken, before the duplicate checks and samples (audit --html draws then). */
  onCensus?: (census: Census) => void
  /** ckan.site_id: the site user always holds a key and is never a person. */
  siteUserName: string
  /** How keys and emails are hashed to find duplicates; by default the widest hash the server has. */
  valueHash?: ValueHash
  /** The database's CKAN version: on 2.10+ the keys already stopped working (texts say so). */
  version?: CkanVersion
}

/**
 * The predicates of the per-user findings the census counts, over "user" u ($1 = the site user's
 * name): what each finding's sample is drawn from. Token membership uses
 * `u.id IN (SELECT user_id FROM api_token)`, which PostgreSQL runs as one hashed subplan: api_token
 * has no index on user_id. (Token holders' own samples come from the census: takeCensus.)
 */
const userPredicates = (hasApiTokenTable: boolean): Record<CountedPredicate, string> => {
  const hasKey = `(u.apikey IS NOT NULL AND u.apikey <> '')`
  const hasTokens = hasApiTokenTable ? '(u.id IN (SELECT user_id FROM api_token))' : 'false'
  const activePerson = `(u.state = 'active' AND u.name <> $1)`
  return {
    keyHoldersWithTokens: `${hasKey} AND ${hasTokens}`,
    keys: hasKey,
    keysNotUuid: `${hasKey} AND NOT ${isUuidSql('u.apikey')}`,
    keysWithoutToken: `${hasKey} AND ${activePerson} AND NOT ${hasTokens}`,
    siteUserKey: `${hasKey} AND u.name = $1`,
    sysadminKeys: `${hasKey} AND ${activePerson} AND u.sysadmin`,
    withoutEmail: `${activePerson} AND (u.email IS NULL OR u.email = '')`,
    withoutEmailWithKey: `${activePerson} AND (u.email IS NULL OR u.email = '') AND ${hasKey}`,
  }
}

type PredicateName =
  | 'apiTokens'
  | 'keyHoldersWithTokens'
  | 'keys'
  | 'keysNotUuid'
  | 'keysWithoutToken'
  | 'neverUsed'
  | 'siteUserKey'
  | 'sysadminKeys'
  | 'withoutEmail'
  | 'withoutEmailWithKey'

type CountedPredicate = Exclude<PredicateName, 'apiTokens' | 'neverUsed'>

/** The findings the census counts, over one of its flag groups. */
function groupMatches(group: FlagGroup): Record<CountedPredicate, boolean> {
  const activePerson = group.state === 'active' && !group.isSiteUser
  return {
    keyHoldersWithTokens: group.hasKey && group.keyHasTokens,
    keys: group.hasKey,
    keysNotUuid: group.hasKey && !group.isUuid,
    keysWithoutToken: group.hasKey && activePerson && !group.keyHasTokens,
    siteUserKey: group.hasKey && group.isSiteUser,
    sysadminKeys: group.hasKey && activePerson && group.sysadmin,
    withoutEmail: activePerson && group.noEmail,
    withoutEmailWithKey: activePerson && group.noEmail && group.hasKey,
  }
}

/**
 * Every per-user finding, computed in PostgreSQL (user-census.ts): the census (flag counts, token
 * counts, hashes shared by more than one key or active email), the exact duplicate counts when
 * any hash is shared, then samples (LIMIT 10 per finding, only for findings that exist). Nothing
 * per user reaches this process.
 */
export async function collectUserFindings(
  sql: Queryable,
  options: UserFindingsOptions,
): Promise<{findings: AuditFinding[]; summary: UserSummary}> {
  const predicates = userPredicates(options.hasApiTokenTable)
  const counted = Object.keys(predicates) as CountedPredicate[]
  const names: PredicateName[] = [...counted, 'apiTokens', 'neverUsed']
  const valueHash = options.valueHash ?? valueHashFor(await serverVersionNum(sql))
  const census = await takeCensus(sql, {
    breakdown: options.breakdown,
    duplicateKinds: options.checkDuplicateEmails ? ['keys', 'emails'] : ['keys'],
    hasApiTokenTable: options.hasApiTokenTable,
    siteUserName: options.siteUserName,
    valueHash,
  })
  options.onCensus?.(census)
  const {groups, tokens} = census
  const totals = Object.fromEntries(names.map((name) => [name, 0])) as Record<PredicateName, number>
  totals.apiTokens = tokens.holders
  totals.neverUsed = tokens.unusedHolders
  const keysByState: StateCounts = {}
  const usersByState: StateCounts = {}
  let sysadmins = 0
  for (const group of groups) {
    const matches = groupMatches(group)
    for (const name of Object.keys(matches) as CountedPredicate[]) if (matches[name]) totals[name] += group.users
    usersByState[group.state] = (usersByState[group.state] ?? 0) + group.users
    if (group.hasKey) keysByState[group.state] = (keysByState[group.state] ?? 0) + group.users
    if (group.state === 'active' && group.sysadmin) sysadmins += group.users
  }
  const total = (name: PredicateName) => totals[name]
  const duplicates = await countDuplicates(sql, census.duplicateHashes, valueHash)
  const samples = await sampleNames(
    sql,
    counted.map((name) => ({count: total(name), name, predicate: predicates[name]})),
    options.siteUserName,
  )
  const holderNames = await namesOfUsers(sql, [...tokens.sampleIds.holders, ...tokens.sampleIds.unusedHolders])
  samples.set(
    'apiTokens',
    tokens.sampleIds.holders.flatMap((id) => holderNames.get(id) ?? []),
  )
  samples.set(
    'neverUsed',
    tokens.sampleIds.unusedHolders.flatMap((id) => holderNames.get(id) ?? []),
  )
  const duplicateKeys = duplicates.keys
  const duplicateEmails = duplicates.emails

  const count = (name: PredicateName) => total(name)
  const sample = (name: PredicateName) => samples.get(name) ?? []
  // A 2.10+ database: the upgrade is behind it, legacy keys already authenticate nothing (ckan-facts §2.1).
  const upgraded = options.version === '2.10' || options.version === '2.11'
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
    upgraded
      ? {
          count: count('keysWithoutToken'),
          fix: `Run ckan-migrate issue-tokens now and hand the tokens out: CKAN ${options.version} already ignores legacy keys, so these users' scripts are locked out until they have one.`,
          id: 'legacy-keys-without-token',
          sample: sample('keysWithoutToken'),
          severity: 'blocker',
          title: `${count('keysWithoutToken')} active users hold a legacy key and no API token: their scripts no longer authenticate on CKAN ${options.version}`,
        }
      : {
          count: count('keysWithoutToken'),
          fix: 'Run ckan-migrate issue-tokens so each of them has an API token before the upgrade: CKAN 2.10 ignores legacy keys.',
          id: 'legacy-keys-without-token',
          sample: sample('keysWithoutToken'),
          severity: 'blocker',
          title: `${count('keysWithoutToken')} active users hold a legacy key and no API token: their scripts stop working on 2.10`,
        },
    {
      count: count('sysadminKeys'),
      fix: upgraded
        ? `Issue these sysadmins tokens and clear their keys (ckan-migrate purge-keys): CKAN ${options.version} refuses the keys, but user_show still shows them.`
        : 'Issue these sysadmins tokens first and clear their keys soon after: a sysadmin key is full control of the site on 2.9.',
      id: 'sysadmin-legacy-keys',
      sample: sample('sysadminKeys'),
      severity: 'warning',
      title: `${count('sysadminKeys')} active sysadmins hold a legacy key`,
    },
    {
      count: count('siteUserKey'),
      details: {siteUser: options.siteUserName},
      fix: upgraded
        ? `Clear it with ckan-migrate purge-keys: CKAN ${options.version} ignores it, and its services authenticate with their own token settings.`
        : 'Leave it while CKAN 2.9 runs DataPusher or XLoader without their token settings; clear it after the upgrade (2.10 ignores it).',
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

function describeStates(counts: StateCounts): string {
  const parts = Object.entries(counts)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([state, count]) => `${count} ${state}`)
  return parts.join(', ') || 'none'
}
