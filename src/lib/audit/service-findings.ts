import {isAbsolute, resolve} from 'node:path'

import {describeError} from '../errors.js'
import {openCkanDatabase, type Queryable} from '../site/ckan-database.js'
import {parseDatabaseUrl, sameDatabase} from '../site/database-url.js'
import {type AuditFinding, SampleCollector} from './audit-finding.js'

const SELECT_HARVEST_SOURCES_WITH_KEY = `
  SELECT title, url, config FROM harvest_source WHERE config LIKE '%api\\_key%' ORDER BY title, url`

/**
 * ckanext-harvest sources whose JSON config holds a remote site's `api_key` (ckan-facts §6.3).
 * The sample names each source by title and URL (without any user:password part); never the key.
 */
export async function harvestSourceFindings(sql: Queryable): Promise<AuditFinding[]> {
  const {rows} = await sql.query<{config: null | string; title: null | string; url: string}>(
    SELECT_HARVEST_SOURCES_WITH_KEY,
  )
  const sources = new SampleCollector()
  for (const row of rows) {
    if (!holdsApiKey(row.config ?? '')) continue
    sources.add(`${row.title ?? '(untitled)'} (${withoutCredentials(row.url)})`)
  }
  if (sources.count === 0) return []
  return [
    {
      count: sources.count,
      fix: "Replace each source's api_key with an API token made on the remote site: the key stops working when that site moves to CKAN 2.10.",
      id: 'harvest-sources-with-api-key',
      sample: sources.names,
      severity: 'warning',
      title: `${sources.count} harvest sources keep a remote site's legacy API key in their configuration`,
    },
  ]
}

function holdsApiKey(config: string): boolean {
  try {
    const parsed = JSON.parse(config) as unknown
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) {
      const key = (parsed as Record<string, unknown>).api_key
      return typeof key === 'string' ? key.trim() !== '' : key !== undefined && key !== null
    }
    return false
  } catch {
    // Not JSON: the harvester could not read it either, but the text names a key, so count it.
    return /"api_key"\s*:\s*"[^"]+"/.test(config)
  }
}

function withoutCredentials(url: string): string {
  try {
    const parsed = new URL(url)
    parsed.username = ''
    parsed.password = ''
    return parsed.href
  } catch {
    return url.replace(/\/\/[^/@]*@/, '//')
  }
}

/** ckanext-xloader's default job store (ckan-facts §6.2). */
export const XLOADER_DEFAULT_JOBS_DB = 'sqlite:////tmp/xloader_jobs.db'

const COUNT_JOBS_WITH_KEY = 'SELECT count(*)::int AS n FROM jobs WHERE api_key IS NOT NULL'
const HAS_JOBS_TABLE = `SELECT to_regclass('jobs') IS NOT NULL AS present`

/** Jobs holding a key, in a PostgreSQL job store; none when XLoader has not made its table yet. */
async function countInPostgres(sql: Queryable): Promise<number> {
  const {rows} = await sql.query<{present: boolean}>(HAS_JOBS_TABLE)
  if (!rows[0]!.present) return 0
  return (await sql.query<{n: number}>(COUNT_JOBS_WITH_KEY)).rows[0]!.n
}

export type XloaderJobsOptions = {
  /** When the jobs database is the CKAN database itself, its open (read-only) connection. */
  ckanDatabase?: {sql: Queryable; url: string}
  /** Folder relative sqlite:/// paths are resolved against (CKAN's working folder; the ini's folder is a fair guess). */
  relativeTo: string
  statementTimeoutMs?: number
  /** ckanext.xloader.jobs_db.uri (a SQLAlchemy URL). */
  uri: string
}

/**
 * Counts XLoader jobs that still store an API key (`jobs.api_key`, never cleared by XLoader). The
 * job store may be PostgreSQL (opened read-only) or SQLite (opened read-only with node:sqlite).
 * An unreachable store is a warning finding, never a crash.
 */
export async function xloaderJobsFindings(options: XloaderJobsOptions): Promise<AuditFinding[]> {
  const where = describeJobsDb(options.uri)
  let count: number
  try {
    count = await countJobsWithKey(options)
  } catch (error) {
    return [
      {
        count: 1,
        details: {jobsDb: where},
        fix: 'Check ckanext.xloader.jobs_db.uri and run the audit where that database can be read, or clear old jobs on the XLoader host (UPDATE jobs SET api_key = NULL).',
        id: 'xloader-jobs-db-unreachable',
        sample: [where],
        severity: 'warning',
        title: `The XLoader jobs database ${where} could not be read: ${oneLine(error)}`,
      },
    ]
  }
  if (count === 0) return []
  return [
    {
      count,
      details: {jobsDb: where},
      fix: "Drain the XLoader queue, then clear the stored keys (UPDATE jobs SET api_key = NULL) and rotate the site user's key: XLoader never deletes them.",
      id: 'xloader-jobs-hold-keys',
      sample: [where],
      severity: 'warning',
      title: `${count} XLoader jobs in ${where} still store an API key`,
    },
  ]
}

async function countJobsWithKey(options: XloaderJobsOptions): Promise<number> {
  const {uri} = options
  if (uri.startsWith('sqlite:')) {
    const path = sqlitePath(uri, options.relativeTo)
    const {DatabaseSync} = await import('node:sqlite')
    const database = new DatabaseSync(path, {open: true, readOnly: true})
    try {
      const table = database.prepare(`SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'jobs'`)
      if (Number((table.get() as {n: number}).n) === 0) return 0
      const row = database.prepare('SELECT count(*) AS n FROM jobs WHERE api_key IS NOT NULL').get() as {n: number}
      return Number(row.n)
    } finally {
      database.close()
    }
  }
  if (options.ckanDatabase && isSameDatabase(options.ckanDatabase.url, uri))
    return countInPostgres(options.ckanDatabase.sql)
  const database = await openCkanDatabase(uri, {readOnly: true, statementTimeoutMs: options.statementTimeoutMs})
  try {
    return await countInPostgres(database.client)
  } finally {
    await database.close()
  }
}

/** SQLAlchemy's sqlite URLs: sqlite:////abs/path, sqlite:///relative/path. */
function sqlitePath(uri: string, relativeTo: string): string {
  const match = /^sqlite(?:\+\w+)?:\/\/\/(.*)$/.exec(uri)
  if (!match || match[1] === '') throw new Error('not a sqlite:///path URL')
  const path = match[1]!.split('?')[0]!
  return isAbsolute(path) ? path : resolve(relativeTo, path)
}

function isSameDatabase(a: string, b: string): boolean {
  try {
    return sameDatabase(a, b)
  } catch {
    return false
  }
}

function describeJobsDb(uri: string): string {
  if (uri.startsWith('sqlite:')) return uri
  try {
    return parseDatabaseUrl(uri).redacted
  } catch {
    return '(an unreadable URL)'
  }
}

function oneLine(error: unknown): string {
  const text = describeError(error)
  // Connection errors may quote the URL; never let a password through.
  return text.replace(/\/\/([^:/@\s]+):[^@\s]*@/g, '//$1:***@')
}
