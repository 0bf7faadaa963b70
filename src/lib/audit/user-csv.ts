import {lstat, mkdir, mkdtemp, open, realpath, rename, rm, stat} from 'node:fs/promises'
import {createWriteStream} from 'node:fs'
import {basename, dirname, join, resolve} from 'node:path'
import {Transform} from 'node:stream'
import {pipeline} from 'node:stream/promises'
import type pg from 'pg'

import {serverVersionNum} from '../site/ckan-database.js'
import {EXIT_CODES, MigrateError} from '../errors.js'
import type {CsvColumn} from '../fs/csv-report.js'
import {syncFolder} from '../fs/secret-file.js'
import {type AuditUserRow, scanUsers} from './database-findings.js'

/** Reports progress of the user scan: the number of users first, then users as they are written. */
export type UserScanProgress = {advance(users: number): void; start(total: number): void; stop(): void}

export type UserCsvOptions = {
  hasApiTokenTable: boolean
  /** How the CSV is made: by default COPY on PostgreSQL 11+ and the cursor before. */
  method?: 'copy' | 'cursor'
  /** server_version_num when the caller already knows it (otherwise asked). */
  serverVersionNum?: number
  progress?: UserScanProgress
  signal?: AbortSignal
}

/** The report's columns, in order: the same in both ways of writing it. */
export const USER_CSV_COLUMNS: ReadonlyArray<CsvColumn<AuditUserRow>> = [
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

/** PostgreSQL 11 added sha256(): from then on the fingerprints are computed in the database. */
const SHA256_SINCE = 110_000

/** The same cell neutralisation as neutraliseCell (csv-report.ts), in SQL, for a text column. */
const neutralised = (column: string) =>
  `CASE WHEN left(${column}, 1) IN ('=', '+', '-', '@', E'\\t', E'\\r') THEN '''' || ${column} ELSE ${column} END`

const TOKENS_BY_USER = `SELECT user_id, count(*)::int AS tokens,
    to_char(max(last_access), 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS last_use
  FROM api_token GROUP BY user_id`
const NO_TOKENS = 'SELECT NULL::text AS user_id, 0 AS tokens, NULL::text AS last_use WHERE false'

/**
 * The whole report as one COPY: PostgreSQL writes the CSV (quoting as RFC 4180 does), computes each
 * key's fingerprint (the first 8 hex digits of its SHA-256, as fingerprintOf does) and neutralises
 * the text cells, so no legacy key ever leaves the database. Empty cells are NULLs, which COPY
 * writes unquoted, as the row-by-row writer does.
 */
const copyStatement = (hasApiTokenTable: boolean) => `COPY (
  SELECT ${neutralised('u.id')} AS id, ${neutralised('u.name')} AS name, ${neutralised('u.state')} AS state,
         CASE WHEN u.sysadmin THEN 'true' ELSE 'false' END AS sysadmin,
         CASE WHEN u.email IS NOT NULL AND u.email <> '' THEN 'true' ELSE 'false' END AS has_email,
         CASE WHEN u.apikey <> '' THEN 'true' ELSE 'false' END AS has_legacy_key,
         CASE WHEN u.apikey <> '' THEN left(encode(sha256(convert_to(u.apikey, 'UTF8')), 'hex'), 8) END AS key_fingerprint,
         coalesce(t.tokens, 0) AS token_count, t.last_use AS last_token_use
  FROM "user" u LEFT JOIN (${hasApiTokenTable ? TOKENS_BY_USER : NO_TOKENS}) t ON t.user_id = u.id
) TO STDOUT WITH (FORMAT csv, HEADER true)`

const COUNT_USERS = 'SELECT count(*)::int AS n FROM "user"'

/**
 * Writes one CSV row per user to `path`, 0600 and atomically (in a private scratch folder beside
 * it, renamed into place), inside the caller's read-only transaction, in constant memory. On
 * PostgreSQL 11+ the database writes the CSV through COPY; older servers stream the users through
 * a cursor and the fingerprints are computed here. Returns the number of rows.
 */
export async function writeUserCsv(client: pg.Client, path: string, options: UserCsvOptions): Promise<number> {
  const {progress} = options
  if (progress) progress.start((await client.query<{n: number}>(COUNT_USERS)).rows[0]!.n)
  const version = options.serverVersionNum ?? (await serverVersionNum(client))
  const method = options.method ?? (version >= SHA256_SINCE ? 'copy' : 'cursor')
  try {
    return await writeBesideTarget(path, (temporary) =>
      method === 'copy' ? copyUserCsv(client, temporary, options) : cursorUserCsv(client, temporary, options),
    )
  } finally {
    progress?.stop()
  }
}

/** The COPY way: the database's CSV bytes go to the file as they come, after a UTF-8 BOM. */
async function copyUserCsv(client: pg.Client, path: string, options: UserCsvOptions): Promise<number> {
  // Loaded only for --csv: a plain audit imports as little as it can (start-up is part of its time).
  const {to: copyTo} = await import('pg-copy-streams')
  const out = createWriteStream(path, {flags: 'wx', mode: 0o600})
  out.write('\uFEFF')
  const copy = client.query(copyTo(copyStatement(options.hasApiTokenTable)))
  let headerSeen = false
  const progressOf = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      if (options.signal?.aborted) {
        done(options.signal.reason as Error)
        return
      }
      if (options.progress) {
        // Rows end with a newline (a name holding one only moves the bar a row early).
        let lines = 0
        for (let at = chunk.indexOf(10); at !== -1; at = chunk.indexOf(10, at + 1)) lines += 1
        if (!headerSeen && lines > 0) {
          headerSeen = true
          lines -= 1
        }
        if (lines > 0) options.progress.advance(lines)
      }
      done(null, chunk)
    },
  })
  await pipeline(copy, progressOf, out)
  await syncFile(path)
  return copy.rowCount
}

/** The cursor way (PostgreSQL 10 and older): rows through scanUsers, fingerprints computed here. */
async function cursorUserCsv(client: pg.Client, path: string, options: UserCsvOptions): Promise<number> {
  let sinceLastReport = 0
  const rows = async function* () {
    for await (const row of scanUsers(client, {hasApiTokenTable: options.hasApiTokenTable})) {
      options.signal?.throwIfAborted()
      sinceLastReport += 1
      if (options.progress && sinceLastReport >= 1000) {
        options.progress.advance(sinceLastReport)
        sinceLastReport = 0
      }
      yield row
    }
    if (sinceLastReport > 0) options.progress?.advance(sinceLastReport)
  }
  const {writeCsvReport} = await import('../fs/csv-report.js')
  return writeCsvReport(path, USER_CSV_COLUMNS, rows())
}

/**
 * The report goes wherever --csv points (the current folder, /tmp), so it is written in a fresh
 * private folder beside the target (mkdtemp: 0700) and renamed into place: 0600, never half
 * written, and the target's folder is left as it was.
 */
async function writeBesideTarget(path: string, write: (temporary: string) => Promise<number>): Promise<number> {
  const target = await regularFileTarget(resolve(path))
  await mkdir(dirname(target), {recursive: true})
  const scratch = await mkdtemp(join(dirname(target), '.ckan-migrate-audit-'))
  try {
    const written = join(scratch, basename(target))
    const rows = await write(written)
    await rename(written, target)
    await syncFolder(dirname(target))
    return rows
  } finally {
    await rm(scratch, {force: true, recursive: true})
  }
}

/**
 * Where the report goes: the path itself, or the file a symbolic link points to (the link is kept).
 * Anything else that exists there (a folder, a device such as /dev/stdout, a pipe) is refused:
 * renaming the report over it would replace it.
 */
async function regularFileTarget(path: string): Promise<string> {
  let info
  try {
    info = await lstat(path)
  } catch (error) {
    // Missing (or under a file in the way, which creating its folder reports): a new report.
    if (['ENOENT', 'ENOTDIR'].includes((error as NodeJS.ErrnoException).code ?? '')) return path
    throw error
  }
  if (info.isFile()) return path
  if (info.isSymbolicLink()) {
    const real = await realpath(path).catch(() => undefined)
    if (real && (await stat(real)).isFile()) return real
  }
  throw new MigrateError(`--csv ${path} is not a regular file (a folder, a device, a pipe or a broken link)`, {
    exitCode: EXIT_CODES.badInput,
    suggestion: 'Pass the path of a new CSV file, or of a CSV file to replace.',
  })
}

async function syncFile(path: string): Promise<void> {
  const handle = await open(path, 'r')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}
