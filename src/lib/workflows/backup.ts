import {createHash} from 'node:crypto'
import {createReadStream} from 'node:fs'
import {stat} from 'node:fs/promises'
import {basename, resolve} from 'node:path'
import {Transform} from 'node:stream'

import {decryptStream, readSecretKey} from '../backup/backup-encryption.js'
import {readBackupSidecar, sidecarPathOf, type DumpFormat} from '../backup/backup-sidecar.js'
import {
  type BackupResult,
  type BackupWriteOptions,
  openRecipient,
  planBackup,
  readDatabaseFacts,
  type DatabaseFacts,
  writeEncryptedBackup,
} from '../backup/backup-writer.js'
import {
  assertToolCanReadServer,
  BestEffortSink,
  firstErrorLine,
  parseRestoreList,
  pgToolMajorVersion,
  type RunningTool,
  startPgTool,
} from '../backup/pg-tools.js'
import {PlainSqlInspector} from '../backup/plain-sql-inspector.js'
import {openCkanDatabase, translateDatabaseError} from '../site/ckan-database.js'
import {parseDatabaseUrl, toLibpqConnection} from '../site/database-url.js'
import {EXIT_CODES, MigrateError} from '../errors.js'
import {assertRegularFile} from '../fs/input-file.js'
import type {Secret} from '../secret.js'

export type {BackupResult, BackupWriteOptions, RecipientChoice} from '../backup/backup-writer.js'

export type BackupOptions = BackupWriteOptions & {
  databaseUrl: string
  /** Folder holding pg_dump and pg_restore (default: the PATH). */
  pgBin?: string
}

/**
 * Backs up a CKAN database with `pg_dump --format=custom`, streamed through `pg_restore --list`
 * (which proves the archive reads and names its tables) and straight into OpenPGP encryption:
 * no plain byte of the dump touches the disk. The encrypted file is written under a temporary
 * name, fsync'd and renamed; on any failure nothing is left behind.
 */
export async function backupDatabase(options: BackupOptions): Promise<BackupResult> {
  const parsed = parseDatabaseUrl(options.databaseUrl)
  const encryption = await openRecipient(options.recipient)
  const [dumpMajor, restoreMajor] = await Promise.all([
    pgToolMajorVersion('pg_dump', options.pgBin),
    pgToolMajorVersion('pg_restore', options.pgBin),
  ])
  // READ ONLY per transaction, not per session: PGlite shares one session between its clients.
  const database = await openCkanDatabase(options.databaseUrl, {statementTimeoutMs: 60_000})
  let facts: DatabaseFacts
  try {
    await database.client.query('BEGIN TRANSACTION READ ONLY')
    facts = await readDatabaseFacts(database.client)
    await database.client.query('ROLLBACK')
  } catch (error) {
    throw translateDatabaseError(error, database.where)
  } finally {
    await database.close()
  }
  assertToolCanReadServer('pg_dump', dumpMajor, facts.serverMajor)
  if (restoreMajor < dumpMajor) {
    throw new MigrateError(`pg_restore ${restoreMajor} cannot read archives of pg_dump ${dumpMajor}`, {
      exitCode: EXIT_CODES.toolMissing,
      suggestion: 'Use pg_dump and pg_restore from the same PostgreSQL client package (--pg-bin).',
    })
  }
  const plan = await planBackup({
    database: parsed.redacted,
    dir: options.dir,
    dryRun: options.dryRun,
    dumpedWith: `pg_dump ${dumpMajor}`,
    dumpFormat: 'pg_dump-custom',
    encryption,
    facts,
    now: options.now,
    site: options.site,
  })
  if (options.dryRun) return plan.result

  // The password (from the user info or ?password=) goes to pg_dump in PGPASSWORD, never in argv.
  const {password, url} = toLibpqConnection(options.databaseUrl)
  const dump = startPgTool('pg_dump', ['--format=custom', '--no-password', `--dbname=${url}`], {
    binFolder: options.pgBin,
    password,
  })
  const restore = startPgTool('pg_restore', ['--list'], {binFolder: options.pgBin, collectStdout: true})
  const sink = new BestEffortSink(restore.child.stdin!)
  return writeEncryptedBackup(
    plan,
    {
      async finish() {
        const dumped = await dump.exited
        if (dumped.code !== 0) {
          throw new MigrateError(`pg_dump failed: ${firstErrorLine(dumped.stderr)}`, {
            exitCode: EXIT_CODES.databaseUnreachable,
            suggestion:
              'Check that the database user may read every CKAN table (pg_dump needs SELECT on all of them) and that the database is up.',
          })
        }
        const listed = await restore.exited
        if (listed.code !== 0) {
          throw new MigrateError(
            `pg_restore --list cannot read the dump pg_dump wrote: ${firstErrorLine(listed.stderr)}`,
            {
              exitCode: EXIT_CODES.toolMissing,
              suggestion: 'Use pg_dump and pg_restore from the same PostgreSQL client package (--pg-bin).',
            },
          )
        }
        return parseRestoreList(listed.stdout).tables.map((table) => `${table.schema}.${table.name}`)
      },
      inspect: (chunk) => sink.write(chunk),
      inspected: () => sink.end(),
      output: dump.child.stdout!,
      stop: () => stopTools([dump, restore]),
    },
    {onProgress: options.onProgress, signal: options.signal},
  )
}

export type VerifyBackupOptions = {
  file: string
  onProgress?: (bytes: number) => void
  /** Passphrase of the secret key (CKAN_MIGRATE_SECRET_KEY_PASSPHRASE). */
  passphrase?: Secret
  pgBin?: string
  secretKey: string
  signal?: AbortSignal
}

export type VerifyBackupResult = {
  /** 'match': the file's SHA-256 equals its sidecar's; 'no-sidecar': nothing to compare with. */
  checksum: 'match' | 'no-sidecar'
  dumpFormat: DumpFormat
  file: string
  /** Plain bytes decrypted (and thrown away) to prove the whole file decrypts and is intact. */
  plainBytes: number
  tables: string[]
}

/**
 * Rehearses a restore without restoring: decrypts the backup in memory and pipes it into
 * `pg_restore --list` (custom format) or a SQL reader (plain format). No plain copy is written.
 */
export async function verifyBackup(options: VerifyBackupOptions): Promise<VerifyBackupResult> {
  const file = resolve(options.file)
  try {
    if (!(await stat(file)).isFile()) throw Object.assign(new Error('not a file'), {code: 'EISDIR'})
  } catch (error) {
    throw new MigrateError(`Cannot read the backup ${file}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`, {
      cause: error,
      exitCode: EXIT_CODES.badInput,
      suggestion: 'Pass --verify with a backup file written by ckan-migrate backup.',
    })
  }
  const sidecar = await readBackupSidecar(file).catch((error: unknown) => {
    if (error instanceof MigrateError && /no readable sidecar/.test(error.message)) return undefined
    throw error
  })
  const dumpFormat: DumpFormat | undefined =
    sidecar?.dumpFormat ??
    (file.endsWith('.pgc.gpg') ? 'pg_dump-custom' : file.endsWith('.sql.gpg') ? 'plain-sql' : undefined)
  if (!dumpFormat) {
    throw new MigrateError(
      `Cannot tell the format of ${basename(file)}: no sidecar, and the name ends neither in .pgc.gpg nor .sql.gpg`,
      {
        exitCode: EXIT_CODES.badInput,
        suggestion: 'Keep the FILE.json sidecar next to the backup, or its original name.',
      },
    )
  }
  if (dumpFormat === 'pg_dump-custom') await pgToolMajorVersion('pg_restore', options.pgBin)
  const key = await readSecretKey(options.secretKey, options.passphrase)
  const hash = createHash('sha256')
  await assertRegularFile(file)
  const cipher = createReadStream(file).pipe(
    new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        hash.update(chunk)
        callback(null, chunk)
      },
    }),
  )
  const plain = await decryptStream(cipher, key, basename(file))
  let plainBytes = 0
  let tables: string[]
  const failed = (reason: string, cause?: unknown) =>
    new MigrateError(`${basename(file)} failed verification: ${reason}`, {
      cause,
      exitCode: EXIT_CODES.verificationFailed,
      suggestion: 'Do not rely on this backup: make a new one with ckan-migrate backup.',
    })
  if (dumpFormat === 'pg_dump-custom') {
    const restore = startPgTool('pg_restore', ['--list'], {binFolder: options.pgBin, collectStdout: true})
    const sink = new BestEffortSink(restore.child.stdin!)
    try {
      for await (const chunk of plain) {
        plainBytes += (chunk as Buffer).length
        options.onProgress?.(plainBytes)
        options.signal?.throwIfAborted()
        await sink.write(chunk as Buffer)
      }
      sink.end()
    } catch (error) {
      stopTools([restore])
      throw error instanceof MigrateError
        ? error
        : failed(`it does not decrypt intact (${describeStreamError(error)})`, error)
    }
    const listed = await restore.exited
    if (listed.code !== 0) {
      const reason = firstErrorLine(listed.stderr)
      if (/unsupported version/i.test(reason)) {
        throw new MigrateError(`This pg_restore is too old for ${basename(file)}: ${reason}`, {
          exitCode: EXIT_CODES.toolMissing,
          suggestion: `Use the pg_restore of ${sidecar?.dumpedWith ?? 'the pg_dump that made it'} or newer (--pg-bin).`,
        })
      }
      throw failed(`pg_restore --list cannot read it (${reason})`)
    }
    const listing = parseRestoreList(listed.stdout)
    if (listing.entries === 0) throw failed('pg_restore --list found no entries')
    tables = listing.tables.map((table) => `${table.schema}.${table.name}`)
  } else {
    const inspector = new PlainSqlInspector()
    try {
      for await (const chunk of plain) {
        plainBytes += (chunk as Buffer).length
        options.onProgress?.(plainBytes)
        options.signal?.throwIfAborted()
        inspector.feed(chunk as Buffer)
      }
    } catch (error) {
      throw error instanceof MigrateError
        ? error
        : failed(`it does not decrypt intact (${describeStreamError(error)})`, error)
    }
    const report = inspector.finish()
    if (!report.looksLikeDump) throw failed('it is not a pg_dump SQL dump')
    if (!report.complete) throw failed('the SQL dump is cut short (no "dump complete" line)')
    tables = report.tables
  }
  const sha256 = hash.digest('hex')
  if (sidecar && sidecar.sha256 !== sha256)
    throw failed(`its SHA-256 differs from ${basename(sidecarPathOf(file))}: the file changed after the backup`)
  return {checksum: sidecar ? 'match' : 'no-sidecar', dumpFormat, file, plainBytes, tables}
}

function stopTools(tools: RunningTool[]): void {
  for (const tool of tools) if (tool.child.exitCode === null && !tool.child.killed) tool.child.kill('SIGTERM')
}

function describeStreamError(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error)
  return message.split('\n')[0]!.replace(/^Error (decrypting|reading) message:\s*/, '')
}
