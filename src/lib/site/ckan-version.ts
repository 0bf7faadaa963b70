import {EXIT_CODES, MigrateError} from '../errors.js'
import type {Queryable} from './ckan-database.js'

/**
 * The one home of "which CKAN is this": the versions ckan-migrate knows, how each is recognised
 * (the alembic head of its database, the release string of status_show), and the facts that
 * differ by version. Every command asks here; nothing else parses a version.
 */
export const CKAN_VERSIONS = ['2.9', '2.10', '2.11'] as const
export type CkanVersion = (typeof CKAN_VERSIONS)[number]

/**
 * The CKAN versions an audit judges readiness for (`audit --target`). 2.12 is CKAN's dev-v2.12
 * branch (ckan/__init__.py says 2.12.0b0; no release tag yet): its findings come from that
 * branch's migrations and may change before the release.
 */
export const UPGRADE_TARGETS = ['2.10', '2.11', '2.12'] as const
export type UpgradeTarget = (typeof UPGRADE_TARGETS)[number]

/** The newest released CKAN: what `audit` judges when no --target is named. */
export const DEFAULT_UPGRADE_TARGET: UpgradeTarget = '2.11'

/** Targets without a release tag yet (their facts are read from a development branch). */
export const UNRELEASED_TARGETS: ReadonlySet<UpgradeTarget> = new Set(['2.12'])

/** "CKAN 2.11", or "CKAN 2.12 (dev-v2.12, not released yet)". */
export function describeTarget(target: UpgradeTarget): string {
  return UNRELEASED_TARGETS.has(target) ? `CKAN ${target} (dev-v${target}, not released yet)` : `CKAN ${target}`
}

function minorOf(version: string): number {
  return Number.parseInt(version.split('.')[1] ?? '0', 10) || 0
}

/**
 * What the upgrade to `target` does that the audit must check first. From CKAN's dev-v2.12
 * branch, ckan/migration/versions/:
 * - 107_4eaa5fcf3092_remove_revision_data.py drops `revision` and every `*_revision` table (and
 *   activity.revision_id), and 2.12 no longer ships ckan/migration/migrate_package_activity.py
 *   (CHANGELOG 2.12 migration notes, #8319): old activity must be migrated before.
 * - 108_f7b64c701a10_fix_conditional_index_on_user.py replaces 2.10's unique index on active
 *   users' (email, state) by one on lower(email) (`idx_only_one_active_email_no_case`, #9178):
 *   emails that differ only in case make it fail.
 * - ckan/logic/action/create.py's api_token_create returns the token's id next to the token.
 */
export function upgradeSteps(target: UpgradeTarget): {
  caseInsensitiveEmailIndex: boolean
  dropsRevisionTables: boolean
} {
  const from212 = minorOf(target) >= 12
  return {caseInsensitiveEmailIndex: from212, dropsRevisionTables: from212}
}

/** alembic_version.version_num of an up-to-date database of each version (ckan-reference/README.md). */
export const ALEMBIC_HEADS: Record<CkanVersion, string> = {
  '2.10': '9f33a0280c51',
  '2.11': '4a5e3465beb6',
  '2.9': 'ccd38ad5fced',
}

/** The full CKAN release each known version was checked against (and the emulator reports). */
export const CKAN_RELEASES: Record<CkanVersion, string> = {'2.10': '2.10.10', '2.11': '2.11.5', '2.9': '2.9.11'}

/** Alembic revisions we can name: each version's head, and 2.9.0's head (migration 099, before 2.9.1's 100). */
const KNOWN_REVISIONS: ReadonlyMap<string, CkanVersion> = new Map([
  ...Object.entries(ALEMBIC_HEADS).map(([version, head]) => [head, version as CkanVersion] as const),
  ['3ae4b17ed66d', '2.9'],
])

export function isCkanVersion(value: string): value is CkanVersion {
  return (CKAN_VERSIONS as readonly string[]).includes(value)
}

/** The version a set of alembic heads belongs to; undefined for heads we cannot name. */
export function versionOfAlembicHeads(heads: readonly string[]): CkanVersion | undefined {
  return heads.map((head) => KNOWN_REVISIONS.get(head)).find(Boolean)
}

/**
 * The known version a status_show release string ("2.10.4", "2.11.0b1") behaves as: 2.9.x is 2.9,
 * 2.10.x is 2.10, anything newer behaves as the newest we know.
 */
export function versionOfRelease(release: string): CkanVersion {
  if (release.startsWith('2.9')) return '2.9'
  if (release.startsWith('2.10')) return '2.10'
  return '2.11'
}

/** CKAN 2.10 and later refuse legacy API keys (ckan-facts §2): true for a release of 2.10 or newer. */
export function refusesLegacyKeys(release: string): boolean {
  const [first = 0, second = 0] = release.split('.').map((part) => Number.parseInt(part, 10) || 0)
  return first > 2 || (first === 2 && second >= 10)
}

/** How ckan.ini keys match: 2.9's ConfigParser lowercases them; 2.10+ keep their case (ckan-facts §9). */
export function iniCaseRule(version: CkanVersion | undefined): 'lowercase' | 'preserve' {
  return version === '2.10' || version === '2.11' ? 'preserve' : 'lowercase'
}

/** What ckan-migrate learns about a CKAN database before it reads users. */
export type CkanDatabaseShape = {
  /** Every row of alembic_version (normally one). */
  alembicHeads: string[]
  /** The activity stream's table (core through 2.11; the readiness page reads a sign of life from it). */
  hasActivityTable: boolean
  hasApiTokenTable: boolean
  hasHarvestSourceTable: boolean
  /** "user".last_active, added by CKAN 2.10's migration 101: a database already upgraded past 2.9. */
  hasLastActiveColumn: boolean
  /** CKAN 2.10's migration 102 index: with it, two active users cannot share an email. */
  hasUniqueActiveEmailIndex: boolean
  /** PostgreSQL's server_version_num (150004 for 15.4). */
  serverVersionNum: number
  /** The CKAN version the alembic head belongs to; undefined for unknown heads or a pre-2.9 site. */
  version: CkanVersion | undefined
}

const SELECT_TABLES = `
  SELECT to_regclass('"user"') IS NOT NULL AS has_user,
         to_regclass('activity') IS NOT NULL AS has_activity,
         to_regclass('api_token') IS NOT NULL AS has_api_token,
         to_regclass('alembic_version') IS NOT NULL AS has_alembic_version,
         to_regclass('harvest_source') IS NOT NULL AS has_harvest_source,
         to_regclass('idx_only_one_active_email') IS NOT NULL AS has_email_index,
         EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('"user"') AND attname = 'last_active' AND NOT attisdropped) AS has_last_active,
         current_setting('server_version_num')::int AS server_version_num`

const SELECT_ALEMBIC_HEADS = 'SELECT version_num FROM alembic_version ORDER BY version_num'

/**
 * Finds out which CKAN database this is. A database without a "user" table is not CKAN's (exit 9);
 * one without api_token is older than CKAN 2.9 (for the audit, a blocker finding, not an error).
 */
export async function inspectCkanDatabase(sql: Queryable, where: string): Promise<CkanDatabaseShape> {
  const {rows} = await sql.query<{
    has_activity: boolean
    has_alembic_version: boolean
    has_api_token: boolean
    has_email_index: boolean
    has_harvest_source: boolean
    has_last_active: boolean
    has_user: boolean
    server_version_num: number
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
  return {
    alembicHeads,
    hasActivityTable: tables.has_activity,
    hasApiTokenTable: tables.has_api_token,
    hasHarvestSourceTable: tables.has_harvest_source,
    hasLastActiveColumn: tables.has_last_active,
    hasUniqueActiveEmailIndex: tables.has_email_index,
    serverVersionNum: tables.server_version_num,
    version: tables.has_api_token ? versionOfAlembicHeads(alembicHeads) : undefined,
  }
}
