import {access, rm, stat} from 'node:fs/promises'
import {basename, resolve} from 'node:path'

import {readBackupSidecar, sha256OfFile} from '../backup/backup-sidecar.js'
import type {CkanIni} from '../site/ckan-ini.js'
import {effectiveSetting} from '../site/ckan-settings.js'
import {openCkanDatabase, type Queryable, translateDatabaseError} from '../site/ckan-database.js'
import {inspectCkanDatabase} from '../site/ckan-version.js'
import {resolveSiteDatabase} from '../site/site-database.js'
import {EXIT_CODES, MigrateError} from '../errors.js'
import {writeCsvReport} from '../fs/csv-report.js'
import {type JournalEntry, openRunFolder, type RunFolder} from '../run/run-folder.js'
import {Secret} from '../secret.js'

export type PurgeKeysOptions = {
  /** Every user's key, not only those whose token verified. */
  all: boolean
  /** The backup to trust (its sidecar is checked), or 'none' for an explicit --no-backup. */
  backup: 'none' | {file: string; maxAgeHours: number}
  /** --confirm-2.9: the site still runs 2.9, where the keys still work. */
  confirm29: boolean
  ckanIniPath?: string
  /** --database-url; else sqlalchemy.url of ckanIniPath (site/site-database.ts). */
  databaseUrl?: string
  dryRun: boolean
  /** Also clear the site user's key when DataPusher / old XLoader could still use it on 2.9. */
  includeSiteUser: boolean
  now?: Date
  /** The run folder (--out) whose journal says which tokens verified. */
  out: string
}

export type PurgedUser = {id: string; keyFingerprint: string; name: string; state: string; sysadmin: boolean}

export type PurgeKeysResult = {
  backup: {ageHours: number; file: string} | null
  /** '2.9' while "user" has no last_active column (added by 2.10's migration 101). */
  ckanSeries: '2.9' | '2.10+'
  /** The CSV of affected users (fingerprints only); null in a dry run. */
  csv: string | null
  dryRun: boolean
  mode: 'all' | 'verified'
  /** Keys cleared (in a dry run: that would be cleared). */
  purged: number
  /** Users the rule selected: a verified token (or, with --all, every user holding a key). */
  selected: number
  siteUser: {name: string | null; protected: boolean; reason: string | null}
  skipped: {alreadyWithoutKey: number; notInDatabase: number; siteUser: number}
  warnings: string[]
}

const bad = (message: string, suggestion: string) =>
  new MigrateError(message, {exitCode: EXIT_CODES.badInput, suggestion})

/**
 * Clears `user.apikey` (CKAN never does: no migration drops it, and 2.10/2.11 still show it) for
 * users whose token from the run verified, or for everyone with `all`. One transaction:
 * SELECT … FOR UPDATE, the CSV of affected users (written before COMMIT, removed on failure),
 * then UPDATE … WHERE apikey IS NOT NULL. Refuses without a fresh backup of this very database
 * (or an explicit 'none'), and on 2.9 without `confirm29`.
 */
export async function purgeKeys(options: PurgeKeysOptions): Promise<PurgeKeysResult> {
  const now = options.now ?? new Date()
  const warnings: string[] = []
  const run = await openRunFolder(options.out, {create: false})
  const candidates = options.all ? undefined : verifiedUserIds(await run.journal.readAll())
  // A dry run reads inside BEGIN READ ONLY … ROLLBACK (the one PGlite rule: see openCkanDatabase).
  const {ini, url} = await resolveSiteDatabase({ckanIniPath: options.ckanIniPath, databaseUrl: options.databaseUrl})
  const database = await openCkanDatabase(url, {statementTimeoutMs: 0})
  try {
    const sql = database.client
    // 2.10's migration 101 adds "user".last_active: the database was upgraded past 2.9.
    const ckanSeries = (await inspectCkanDatabase(sql, database.where)).hasLastActiveColumn ? '2.10+' : '2.9'
    if (ckanSeries === '2.9' && !options.confirm29) {
      if (!options.dryRun) {
        throw bad(
          'This site still runs CKAN 2.9, where legacy keys still authenticate: clearing them cuts off every client that has not switched to its token',
          'Pass --confirm-2.9 once every client uses its token (verify --legacy), or run purge-keys after the upgrade.',
        )
      }
      warnings.push('This site runs CKAN 2.9: the real run needs --confirm-2.9, because the keys still work there.')
    }
    const backup = await checkBackup(sql, options.backup, now)
    if (!backup) warnings.push('--no-backup: no backup was checked; the cleared keys cannot be restored.')
    const siteUser = await decideSiteUser(options, ini, ckanSeries, run)
    if (siteUser.protected) warnings.push(siteUser.reason!)

    await sql.query(options.dryRun ? 'BEGIN TRANSACTION READ ONLY' : 'BEGIN')
    try {
      const lock = options.dryRun ? '' : 'FOR UPDATE'
      const found = candidates
        ? (await sql.query<{id: string}>('SELECT id FROM "user" WHERE id = ANY($1)', [candidates])).rows.length
        : 0
      if (candidates && candidates.length > 0 && found === 0) {
        throw new MigrateError(
          `None of the ${candidates.length} users whose token verified exists in this database: the run folder belongs to another site`,
          {
            exitCode: EXIT_CODES.runConflict,
            suggestion: 'Point --database-url / --ckan-ini at the site of this run, or pass the --out of this site.',
          },
        )
      }
      const {rows} = candidates
        ? await sql.query<UserRow>(
            `SELECT id, name, state, sysadmin, apikey FROM "user" WHERE id = ANY($1) AND apikey IS NOT NULL ORDER BY name ${lock}`,
            [candidates],
          )
        : await sql.query<UserRow>(
            `SELECT id, name, state, sysadmin, apikey FROM "user" WHERE apikey IS NOT NULL ORDER BY name ${lock}`,
          )
      const keep = (row: UserRow) => siteUser.protected && row.name === siteUser.name
      const affected: PurgedUser[] = rows.filter((row) => !keep(row)).map(toPurgedUser)
      const result: PurgeKeysResult = {
        backup,
        ckanSeries,
        csv: null,
        dryRun: options.dryRun,
        mode: options.all ? 'all' : 'verified',
        purged: affected.length,
        selected: candidates ? candidates.length : rows.length,
        siteUser,
        skipped: {
          alreadyWithoutKey: candidates ? found - rows.length : 0,
          notInDatabase: candidates ? candidates.length - found : 0,
          siteUser: rows.length - affected.length,
        },
        warnings,
      }
      if (options.dryRun) {
        await sql.query('ROLLBACK')
        return result
      }
      const kept = rows.filter(keep).map((row) => ({id: row.id, name: row.name}))
      return await commitPurge(sql, run, affected, kept, result, now)
    } catch (error) {
      await sql.query('ROLLBACK').catch(() => {})
      throw error
    }
  } catch (error) {
    // SELECT … FOR UPDATE and UPDATE need UPDATE on "user"; a dry run only reads.
    throw translateDatabaseError(error, database.where, {privilege: options.dryRun ? 'SELECT' : 'UPDATE'})
  } finally {
    await database.close()
  }
}

type UserRow = {apikey: string; id: string; name: string; state: string; sysadmin: boolean}

function toPurgedUser(row: UserRow): PurgedUser {
  const key = new Secret(row.apikey)
  return {id: row.id, keyFingerprint: key.fingerprint(), name: row.name, state: row.state, sysadmin: row.sysadmin}
}

async function commitPurge(
  sql: Queryable,
  run: RunFolder,
  affected: PurgedUser[],
  kept: Array<{id: string; name: string}>,
  result: PurgeKeysResult,
  now: Date,
): Promise<PurgeKeysResult> {
  await run.lock('purge-keys')
  const csv = await freshCsvPath(run, now)
  let committed = false
  try {
    await run.record({command: 'purge-keys', dryRun: false, kind: 'run-started'})
    const basis = result.mode === 'all' ? '--all' : 'token verified'
    await writeCsvReport(
      csv,
      [
        {header: 'user_id', value: (user: PurgedUser) => user.id},
        {header: 'user_name', value: (user) => user.name},
        {header: 'state', value: (user) => user.state},
        {header: 'sysadmin', value: (user) => user.sysadmin},
        {header: 'key_fingerprint', value: (user) => user.keyFingerprint},
        {header: 'basis', value: () => basis},
      ],
      affected,
    )
    const ids = affected.map((user) => user.id)
    const updated = await sql.query('UPDATE "user" SET apikey = NULL WHERE id = ANY($1) AND apikey IS NOT NULL', [ids])
    if (updated.rowCount !== ids.length) throw new Error(`updated ${updated.rowCount} rows instead of ${ids.length}`)
    await sql.query('COMMIT')
    committed = true
    for (const user of kept)
      await run.record({
        kind: 'user-skipped',
        reason: result.siteUser.reason ?? 'site user',
        userId: user.id,
        userName: user.name,
      })
    await run.record({count: ids.length, kind: 'keys-purged', userIds: ids})
    await run.record({
      command: 'purge-keys',
      kind: 'run-finished',
      summary: {purged: ids.length, skippedSiteUser: result.skipped.siteUser},
    })
    return {...result, csv}
  } catch (error) {
    if (!committed) await rm(csv, {force: true})
    throw error
  } finally {
    await run.unlock()
  }
}

/** Users whose latest verification in the journal succeeded, and whose verified token was not revoked since. */
export function verifiedUserIds(entries: JournalEntry[]): string[] {
  const latest = new Map<string, {jti: string; ok: boolean}>()
  for (const entry of entries) {
    if (entry.kind === 'token-verified') latest.set(entry.userId, {jti: entry.jtiFingerprint, ok: entry.ok})
    else if (
      (entry.kind === 'token-revoked' || entry.kind === 'token-orphan-revoked') &&
      latest.get(entry.userId)?.jti === entry.jtiFingerprint
    ) {
      latest.set(entry.userId, {jti: entry.jtiFingerprint, ok: false})
    }
  }
  return [...latest].filter(([, state]) => state.ok).map(([userId]) => userId)
}

async function checkBackup(
  sql: Queryable,
  backup: PurgeKeysOptions['backup'],
  now: Date,
): Promise<PurgeKeysResult['backup']> {
  if (backup === 'none') return null
  const file = resolve(backup.file)
  const sidecar = await readBackupSidecar(file)
  try {
    await stat(file)
  } catch {
    throw bad(
      `The backup ${file} is missing (only its sidecar is there)`,
      'Name the backup file itself with --backup, or make a new one with ckan-migrate backup.',
    )
  }
  const ageHours = (now.getTime() - Date.parse(sidecar.createdAt)) / 3_600_000
  if (!(ageHours <= backup.maxAgeHours) || ageHours < -1) {
    throw bad(
      `The backup ${basename(file)} is ${ageHours.toFixed(1)} hours old, more than --max-backup-age ${backup.maxAgeHours}`,
      'Make a fresh one with ckan-migrate backup right before purging keys.',
    )
  }
  if ((await sha256OfFile(file)) !== sidecar.sha256) {
    throw bad(
      `The backup ${basename(file)} does not match the SHA-256 in its sidecar: it changed or is damaged`,
      'Make a fresh one with ckan-migrate backup.',
    )
  }
  const database = (await sql.query<{database: string}>('SELECT current_database() AS database')).rows[0]!.database
  const oldest =
    (await sql.query<{id: string}>('SELECT id FROM "user" ORDER BY created NULLS LAST, id LIMIT 1')).rows[0]?.id ?? null
  if (sidecar.identity.database !== database || sidecar.identity.oldestUserId !== oldest) {
    throw bad(
      `The backup ${basename(file)} is of another database (${sidecar.identity.database}, site ${sidecar.site})`,
      'Back up this very database with ckan-migrate backup, then pass that file.',
    )
  }
  return {ageHours: Math.round(ageHours * 100) / 100, file}
}

/**
 * On 2.9, DataPusher always sends the site user's key and XLoader before 2.1 falls back to it
 * (≤0.10 always; 0.11–2.0 when ckanext.xloader.api_token is unset): clearing it breaks their jobs.
 */
async function decideSiteUser(
  options: PurgeKeysOptions,
  ini: CkanIni | undefined,
  series: '2.9' | '2.10+',
  run: RunFolder,
): Promise<PurgeKeysResult['siteUser']> {
  let name = effectiveSetting(ini, 'ckan.site_id').value ?? null
  if (!name && ini) {
    const siteUrl = effectiveSetting(ini, 'ckan.site_url').value
    if (siteUrl) name = URL.canParse(siteUrl) ? new URL(siteUrl).hostname : null
  }
  name ??= run.meta.site.siteUserName ?? null
  if (series !== '2.9' || options.includeSiteUser) return {name, protected: false, reason: null}
  const plugins = ini?.plugins()
  const users = !plugins
    ? 'plugins unknown (no --ckan-ini)'
    : plugins.includes('datapusher')
      ? 'DataPusher is enabled'
      : plugins.includes('xloader')
        ? 'XLoader is enabled (before 2.1 it falls back to this key)'
        : undefined
  if (!users) return {name, protected: false, reason: null}
  if (!name) {
    throw bad(
      'Cannot tell which user is the site user (no ckan.site_id, no ckan.site_url)',
      "Pass --ckan-ini with the site's ckan.ini, or --include-site-user if DataPusher and XLoader no longer use its key.",
    )
  }
  return {
    name,
    protected: true,
    reason: `Keeping the site user ${name}'s key: on CKAN 2.9 ${users}, and its jobs authenticate with that key. Clear it after the upgrade, or pass --include-site-user.`,
  }
}

/**
 * purge-keys_<UTC second>.csv, or purge-keys_<UTC second>-2.csv (-3, …) when a run in the same
 * second already wrote that name: a report of keys cleared is never overwritten. Called under the
 * run's lock, so no other purge-keys picks the same name meanwhile.
 */
async function freshCsvPath(run: RunFolder, now: Date): Promise<string> {
  const stamp = now
    .toISOString()
    .replaceAll(/[-:]/g, '')
    .replace(/\.\d{3}Z$/, 'Z')
  for (let attempt = 1; ; attempt += 1) {
    const path = run.file(`purge-keys_${stamp}${attempt === 1 ? '' : `-${attempt}`}.csv`)
    try {
      await access(path)
    } catch {
      return path
    }
  }
}
