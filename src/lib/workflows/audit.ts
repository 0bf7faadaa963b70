import {mkdir, mkdtemp, rename, rm} from 'node:fs/promises'
import {basename, dirname, join, resolve} from 'node:path'

import {type AuditFinding, sortFindings} from '../audit/audit-finding.js'
import type {AuditResult} from '../audit/audit-result.js'
import {collectConfigFindings} from '../audit/config-findings.js'
import {
  type AuditUserRow,
  collectUserFindings,
  inspectCkanDatabase,
  scanUsers,
  versionFindings,
} from '../audit/database-findings.js'
import {harvestSourceFindings, XLOADER_DEFAULT_JOBS_DB, xloaderJobsFindings} from '../audit/service-findings.js'
import {decideVerdict} from '../audit/verdict.js'
import type {CkanStatus} from '../ckan/ckan-api-client.js'
import {CkanIni, readCkanIni} from '../ckan/ckan-ini.js'
import {chooseDatabaseUrl, effectiveSetting} from '../ckan/ckan-settings.js'
import {type CkanDatabase, openCkanDatabase, translateDatabaseError} from '../db/ckan-database.js'
import {parseDatabaseUrl} from '../db/database-url.js'
import type {CsvColumn} from '../files/csv-report.js'
import type {CkanVersion} from '../sandbox/ckan-schema.js'

export type AuditOptions = {
  /** PEM file for --ckan-url's TLS (private CAs). */
  caCertPath?: string
  /** The site's ckan.ini (its use = config: chain is followed). */
  ckanIniPath?: string
  /** Base URL of the site: status_show gives the running version and plugins. */
  ckanUrl?: URL
  /** Where to write the per-user CSV report. */
  csvPath?: string
  /** --database-url; otherwise sqlalchemy.url from the ini (CKAN_SQLALCHEMY_URL overriding). */
  databaseUrl?: string
  /** The environment CKAN runs with (overrides, envvars); process.env by default. */
  env?: NodeJS.ProcessEnv
  /** Called once before the user scan with the number of users, then after each batch. */
  onUserScan?: {advance(users: number): void; start(total: number): void; stop(): void}
  signal?: AbortSignal
  /** statement_timeout for every query, in milliseconds (default 120 000). */
  statementTimeoutMs?: number
  /** Timeout of the status_show call, in milliseconds. */
  timeoutMs?: number
}

export type {AuditResult} from '../audit/audit-result.js'

const CSV_COLUMNS: ReadonlyArray<CsvColumn<AuditUserRow>> = [
  {header: 'id', value: (row) => row.id},
  {header: 'name', value: (row) => row.name},
  {header: 'state', value: (row) => row.state},
  {header: 'sysadmin', value: (row) => row.isSysadmin},
  {header: 'has_email', value: (row) => row.hasEmail},
  {header: 'has_legacy_key', value: (row) => row.hasLegacyKey},
  {header: 'key_fingerprint', value: (row) => row.keyFingerprint},
  {header: 'token_count', value: (row) => row.apiTokens},
  {header: 'last_token_use', value: (row) => row.lastTokenUse},
]

const COUNT_USERS = 'SELECT count(*)::int AS n FROM "user"'

/**
 * `ckan-migrate audit`: a read-only inventory of legacy keys and tokens, configuration and
 * service checks, and a READY / NOT READY verdict for CKAN 2.10/2.11. Everything runs in one
 * read-only, repeatable-read transaction on one connection; users stream through a cursor.
 */
export async function auditSite(options: AuditOptions): Promise<AuditResult> {
  const env = options.env ?? process.env
  const warnings: string[] = []
  const firstIni = options.ckanIniPath
    ? await readCkanIni(options.ckanIniPath, {caseRule: 'lowercase', env})
    : undefined
  const choice = chooseDatabaseUrl(
    {databaseUrl: options.databaseUrl, ini: firstIni && iniForDatabaseUrl(firstIni, env)},
    env,
  )
  const parsedUrl = parseDatabaseUrl(choice.url)
  if (parsedUrl.warning) warnings.push(parsedUrl.warning)

  const status = options.ckanUrl ? await fetchStatus(options) : undefined
  const statementTimeoutMs = options.statementTimeoutMs ?? 120_000
  const database = await openCkanDatabase(choice.url, {readOnly: true, statementTimeoutMs})
  try {
    await database.client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY')
    // Settings local to this read-only transaction (docs/commands/audit.md, "Speed"): room for the
    // duplicate-key and duplicate-email sorts in memory, no JIT compilation (it costs more than it
    // saves on these scans), and two parallel workers for the counting pass.
    await database.client.query(`SET LOCAL work_mem = '64MB'`)
    await database.client.query('SET LOCAL jit = off')
    await database.client.query('SET LOCAL max_parallel_workers_per_gather = 2')
    const shape = await inspectCkanDatabase(database.client, database.where)
    // 2.9 lowercases option names; 2.10+ keep their case (ckan-facts §7).
    const ini = firstIni && new CkanIni(firstIni.files, {caseRule: caseRuleFor(shape.version), env})
    if (ini) checkInterpolations(ini)
    const plugins = ini ? ini.plugins() : (status?.extensions ?? [])
    const findings: AuditFinding[] = [...versionFindings(shape, status?.ckanVersion)]
    findings.push(...(await collectConfigFindings({env, ini, plugins, version: shape.version})))

    const users = await collectUserFindings(database.client, {
      checkDuplicateEmails: !shape.hasUniqueActiveEmailIndex,
      hasApiTokenTable: shape.hasApiTokenTable,
      siteUserName: siteUserNameOf(ini, env),
    })
    findings.push(...users.findings)
    const csv = options.csvPath ? await writeUserCsv(database, shape.hasApiTokenTable, options.csvPath, options) : null
    if (shape.hasHarvestSourceTable) findings.push(...(await harvestSourceFindings(database.client)))
    if (plugins.includes('xloader')) {
      findings.push(
        ...(await xloaderJobsFindings({
          ckanDatabase: {sql: database.client, url: choice.url},
          relativeTo: ini ? dirname(ini.path) : process.cwd(),
          statementTimeoutMs,
          uri: effectiveSetting(ini, 'ckanext.xloader.jobs_db.uri', env).value || XLOADER_DEFAULT_JOBS_DB,
        })),
      )
    }
    await database.client.query('COMMIT')
    const sorted = sortFindings(findings)
    return {
      ckan: {alembicHeads: shape.alembicHeads, status: status ?? null, version: shape.version ?? null},
      ckanIni: ini?.path ?? null,
      csv,
      database: {source: choice.source, url: database.where},
      findings: sorted,
      summary: users.summary,
      verdict: decideVerdict(sorted),
      warnings,
    }
  } catch (error) {
    throw translateDatabaseError(error, database.where)
  } finally {
    await database.close()
  }
}

/** Streams every user through the cursor into the CSV report, with a progress bar. */
async function writeUserCsv(
  database: CkanDatabase,
  hasApiTokenTable: boolean,
  csvPath: string,
  options: AuditOptions,
): Promise<AuditResult['csv']> {
  const progress = options.onUserScan
  if (progress) progress.start((await database.client.query<{n: number}>(COUNT_USERS)).rows[0]!.n)
  let sinceLastReport = 0
  const rows = async function* () {
    for await (const row of scanUsers(database.client, {hasApiTokenTable})) {
      options.signal?.throwIfAborted()
      sinceLastReport += 1
      if (progress && sinceLastReport >= 1000) {
        progress.advance(sinceLastReport)
        sinceLastReport = 0
      }
      yield row
    }
  }
  try {
    return {path: csvPath, rows: await writeCsvBesideTarget(csvPath, rows())}
  } finally {
    if (progress) {
      if (sinceLastReport > 0) progress.advance(sinceLastReport)
      progress.stop()
    }
  }
}

/**
 * writeCsvReport makes the folder it writes in private (0700), which is right for a run folder
 * but not for wherever --csv points (the current folder, /tmp). So the report is written in a
 * fresh private folder beside the target and renamed into place: still 0600 and atomic.
 */
async function writeCsvBesideTarget(path: string, rows: AsyncIterable<AuditUserRow>): Promise<number> {
  const target = resolve(path)
  await mkdir(dirname(target), {recursive: true})
  const scratch = await mkdtemp(join(dirname(target), '.ckan-migrate-audit-'))
  try {
    const written = join(scratch, basename(target))
    // Loaded only for --csv: a plain audit imports as little as it can (start-up is part of its time).
    const {writeCsvReport} = await import('../files/csv-report.js')
    const count = await writeCsvReport(written, CSV_COLUMNS, rows)
    await rename(written, target)
    return count
  } finally {
    await rm(scratch, {force: true, recursive: true})
  }
}

async function fetchStatus(options: AuditOptions): Promise<CkanStatus> {
  // Loaded only for --ckan-url: the HTTP client's dependencies take longer to import than a
  // plain audit of a small site takes to run.
  const {CkanApiClient} = await import('../ckan/ckan-api-client.js')
  const client = new CkanApiClient({
    caCertPath: options.caCertPath,
    ckanUrl: options.ckanUrl!,
    timeoutMs: options.timeoutMs,
  })
  try {
    return await client.statusShow()
  } finally {
    await client.close()
  }
}

function caseRuleFor(version: CkanVersion | undefined): 'lowercase' | 'preserve' {
  return version === '2.10' || version === '2.11' ? 'preserve' : 'lowercase'
}

/**
 * The ini as read for sqlalchemy.url before the version is known: 2.9's lowercasing, unless only
 * 2.10+'s rules (case kept, %(CKAN_*)s from the environment) can interpolate the URL.
 */
function iniForDatabaseUrl(ini: CkanIni, env: NodeJS.ProcessEnv): CkanIni {
  try {
    ini.get('sqlalchemy.url')
    return ini
  } catch (error) {
    const preserved = new CkanIni(ini.files, {caseRule: 'preserve', env})
    try {
      preserved.get('sqlalchemy.url')
      return preserved
    } catch {
      throw error
    }
  }
}

/** CKAN interpolates every setting of [app:main] when it starts: a broken %(...)s anywhere stops it. */
function checkInterpolations(ini: CkanIni): void {
  for (const key of ini.keys()) ini.get(key)
}

/** The site user's name: ckan.site_id, or (2.9) the host of ckan.site_url, else "default". */
function siteUserNameOf(ini: CkanIni | undefined, env: NodeJS.ProcessEnv): string {
  const siteId = effectiveSetting(ini, 'ckan.site_id', env).value
  if (siteId) return siteId
  const siteUrl = effectiveSetting(ini, 'ckan.site_url', env).value
  if (siteUrl) {
    try {
      return new URL(siteUrl).hostname || 'default'
    } catch {}
  }
  return 'default'
}
