import {dirname} from 'node:path'

import {type AuditFinding, sortFindings} from '../audit/audit-finding.js'
import type {AuditResult} from '../audit/audit-result.js'
import {collectConfigFindings} from '../audit/config-findings.js'
import {type AuditBreakdown, breakdownColumns, readinessBreakdown} from '../audit/readiness-breakdown.js'
import {collectUserFindings, versionFindings} from '../audit/database-findings.js'
import {valueHashFor} from '../audit/user-census.js'
import {type UserScanProgress, writeUserCsv} from '../audit/user-csv.js'
import {harvestSourceFindings, XLOADER_DEFAULT_JOBS_DB, xloaderJobsFindings} from '../audit/service-findings.js'
import {decideVerdict} from '../audit/verdict.js'
import type {CkanStatus} from '../site/ckan-api-client.js'
import {CkanIni, readCkanIni} from '../site/ckan-ini.js'
import {chooseDatabaseUrl, effectiveSetting} from '../site/ckan-settings.js'
import {
  type CkanDatabase,
  openCkanDatabase,
  type Queryable,
  readOnlyTransaction,
  translateDatabaseError,
} from '../site/ckan-database.js'
import {parseDatabaseUrl} from '../site/database-url.js'
import {DEFAULT_UPGRADE_TARGET, iniCaseRule, inspectCkanDatabase, type UpgradeTarget} from '../site/ckan-version.js'
import {upgradePathFindings} from '../audit/upgrade-path-findings.js'
import type {Html} from '../report/html.js'
import {drawReadinessFigures, startFigureDrawer} from '../report/figure-drawer.js'

export type AuditOptions = {
  /** PEM file for --ckan-url's TLS (private CAs). */
  caCertPath?: string
  /** The site's ckan.ini (its use = config: chain is followed). */
  ckanIniPath?: string
  /** Base URL of the site: status_show gives the running version and plugins. */
  ckanUrl?: URL
  /** Where to write the per-user CSV report. */
  csvPath?: string
  /** Where to write the readiness page (one self-contained HTML file). */
  htmlPath?: string
  /** --database-url; otherwise sqlalchemy.url from the ini (CKAN_SQLALCHEMY_URL overriding). */
  databaseUrl?: string
  /** The environment CKAN runs with (overrides, envvars); process.env by default. */
  env?: NodeJS.ProcessEnv
  /** Called once before the user scan with the number of users, then after each batch. */
  onUserScan?: UserScanProgress
  signal?: AbortSignal
  /** The CKAN version to judge readiness for (default DEFAULT_UPGRADE_TARGET, the newest released). */
  target?: UpgradeTarget
  /** statement_timeout for every query, in milliseconds (default 120 000). */
  statementTimeoutMs?: number
  /** Timeout of the status_show call, in milliseconds. */
  timeoutMs?: number
}

export type {AuditResult} from '../audit/audit-result.js'

/**
 * `ckan-migrate audit`: a read-only inventory of legacy keys and tokens, configuration and
 * service checks, and a READY / NOT READY verdict for the target version (--target: 2.10, 2.11 or
 * 2.12; default the newest released). Everything runs in one
 * read-only, repeatable-read transaction on one connection; users stream through a cursor.
 */
export async function auditSite(options: AuditOptions): Promise<AuditResult> {
  // The page's charts are drawn on a thread of their own, which starts loading its charting
  // library now (if the launcher has not started it already): figure-drawer.ts.
  if (options.htmlPath) startFigureDrawer()
  // …and the page's own module loads while the audit waits for PostgreSQL.
  const pageModule = options.htmlPath ? import('../report/readiness-page.js') : undefined
  pageModule?.catch(() => {})
  const env = options.env ?? process.env
  const target = options.target ?? DEFAULT_UPGRADE_TARGET
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
  const database = await openCkanDatabase(choice.url, {statementTimeoutMs})
  let result: AuditResult
  // The page's charts, drawn as soon as the census has counted their figures.
  let figures: Promise<Html | undefined> = Promise.resolve(undefined)
  try {
    result = await readOnlyTransaction(database.client, () => auditInTransaction(database), {repeatableRead: true})
  } catch (error) {
    // The audit's own error is the one to report, not a failure to close after it.
    await database.close().catch(() => {})
    throw translateDatabaseError(error, database.where)
  }
  // The connection closes while the page is written.
  const closed = database.close()
  try {
    // The page shows the very object --json prints (less the page's own path and size).
    if (options.htmlPath) {
      const {writeReadinessPage} = await pageModule!
      result.html = await writeReadinessPage(options.htmlPath, result, await figures)
    }
  } catch (error) {
    // A page that could not be written (a full disk) is what the admin must hear of.
    await closed.catch(() => {})
    throw error
  }
  await closed
  return result

  async function auditInTransaction(database: CkanDatabase): Promise<AuditResult> {
    await auditTransactionSettings(database.client)
    const shape = await inspectCkanDatabase(database.client, database.where)
    // 2.9 lowercases option names; 2.10+ keep their case (ckan-facts §7).
    const ini = firstIni && new CkanIni(firstIni.files, {caseRule: iniCaseRule(shape.version), env})
    if (ini) checkInterpolations(ini)
    // The plugins CKAN runs with: ckan.plugins as the environment leaves it (ckanext-envvars'
    // CKAN__PLUGINS beats the ini), else status_show's.
    const plugins = ini
      ? (effectiveSetting(ini, 'ckan.plugins', env).value ?? '').split(/\s+/).filter(Boolean)
      : (status?.extensions ?? [])
    const findings: AuditFinding[] = [...versionFindings(shape, status?.ckanVersion)]
    findings.push(...(await collectConfigFindings({env, ini, plugins, version: shape.version})))
    // With --html the census also counts the page's figures (readiness-breakdown.ts).
    const columns = options.htmlPath ? await breakdownColumns(database.client, shape) : undefined
    let breakdown: AuditBreakdown | null = null
    const users = await collectUserFindings(database.client, {
      breakdown: columns,
      checkDuplicateEmails: !shape.hasUniqueActiveEmailIndex,
      hasApiTokenTable: shape.hasApiTokenTable,
      // The charts are drawn (on their own thread) as soon as the census is in, while the rest
      // of the audit runs.
      onCensus: (census) => {
        if (!columns) return
        breakdown = readinessBreakdown(census, columns, {env, hasApiTokenTable: shape.hasApiTokenTable, ini, plugins})
        figures = drawReadinessFigures(breakdown)
        figures.catch(() => {})
      },
      siteUserName: siteUserNameOf(ini, env),
      valueHash: valueHashFor(shape.serverVersionNum),
      version: shape.version,
    })
    findings.push(...users.findings)
    findings.push(...(await upgradePathFindings(database.client, target)))
    const csv = options.csvPath
      ? {
          path: options.csvPath,
          rows: await writeUserCsv(database.client, options.csvPath, {
            hasApiTokenTable: shape.hasApiTokenTable,
            progress: options.onUserScan,
            serverVersionNum: shape.serverVersionNum,
            signal: options.signal,
          }),
        }
      : null
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
    const sorted = sortFindings(findings)
    const result: AuditResult = {
      breakdown,
      ckan: {alembicHeads: shape.alembicHeads, status: status ?? null, version: shape.version ?? null},
      ckanIni: ini?.path ?? null,
      csv,
      database: {source: choice.source, url: database.where},
      findings: sorted,
      html: null,
      summary: users.summary,
      verdict: decideVerdict(sorted, target),
      warnings,
    }
    return result
  }
}

/**
 * Settings local to an audit's read-only transaction (docs/commands/audit.md): room for the
 * duplicate-key and duplicate-email sorts in memory, no JIT compilation (it costs more than it
 * saves on these scans), and two parallel workers for the census and the exact check.
 */
async function auditTransactionSettings(sql: Queryable): Promise<void> {
  await sql.query(`SET LOCAL work_mem = '64MB'`)
  // PostgreSQL 10 has no jit setting (and needs none turned off).
  await sql.query(`SELECT set_config(name, 'off', true) FROM pg_settings WHERE name = 'jit'`)
  await sql.query('SET LOCAL max_parallel_workers_per_gather = 2')
}

async function fetchStatus(options: AuditOptions): Promise<CkanStatus> {
  // Loaded only for --ckan-url: the HTTP client's dependencies take longer to import than a
  // plain audit of a small site takes to run.
  const {CkanApiClient} = await import('../site/ckan-api-client.js')
  const client = new CkanApiClient({
    caCertPath: options.caCertPath,
    ckanUrl: options.ckanUrl!,
    signal: options.signal,
    timeoutMs: options.timeoutMs,
  })
  try {
    return await client.statusShow()
  } finally {
    await client.close()
  }
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
