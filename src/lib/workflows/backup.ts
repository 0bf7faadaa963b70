import type {PGlite} from '@electric-sql/pglite'
import {createHash, randomBytes} from 'node:crypto'
import {createReadStream, createWriteStream} from 'node:fs'
import {access, constants, open, rename, rm, stat} from 'node:fs/promises'
import {basename, dirname, join, resolve} from 'node:path'
import {PassThrough, Readable, Transform} from 'node:stream'
import {pipeline} from 'node:stream/promises'

import {
  recipientFromGpgKeyring,
  recipientFromKeyFile,
  decryptStream,
  readSecretKey,
  type BackupRecipient,
  type Encryption,
} from '../backup/backup-encryption.js'
import {
  backupFileName,
  type BackupSidecar,
  type DatabaseIdentity,
  type DumpFormat,
  readBackupSidecar,
  SIDECAR_FORMAT,
  SIDECAR_TOOL,
  sidecarPathOf,
} from '../backup/backup-sidecar.js'
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
import {openCkanDatabase, type Queryable, translateDatabaseError} from '../site/ckan-database.js'
import {parseDatabaseUrl, toLibpqConnection} from '../site/database-url.js'
import {EXIT_CODES, MigrateError} from '../errors.js'
import {ensureFolderForSecrets, syncFolder, writeFileAtomically} from '../fs/secret-file.js'
import type {Secret} from '../secret.js'
import {folderError, translateSystemError} from '../system-errors.js'

/** --recipient-key FILE (OpenPGP.js, in-process) or --key-id ID (the local GnuPG keyring). */
export type RecipientChoice = {keyFile: string} | {keyId: string}

type CommonBackupOptions = {
  /** Folder for the backup (created 0700). */
  dir: string
  /** Check everything, write nothing. */
  dryRun?: boolean
  /** The time in the file name and sidecar (tests pin it). */
  now?: Date
  /** Called with the number of plain dump bytes encrypted so far. */
  onProgress?: (bytes: number) => void
  recipient: RecipientChoice
  signal?: AbortSignal
  /** ckan.site_id when known; otherwise the database name goes into the file name. */
  site?: string
}

export type BackupOptions = CommonBackupOptions & {
  databaseUrl: string
  /** Folder holding pg_dump and pg_restore (default: the PATH). */
  pgBin?: string
}

export type EmbeddedBackupOptions = CommonBackupOptions & {
  /** The sandbox's PGlite instance. pglite-tools runs DEALLOCATE ALL on it afterwards. */
  db: PGlite
}

export type BackupResult = {
  /** Size of the encrypted file (null in a dry run). */
  bytes: number | null
  /** Redacted database URL, or "embedded PGlite". */
  database: string
  dryRun: boolean
  dumpFormat: DumpFormat
  dumpedWith: string
  encryption: BackupRecipient
  file: string
  serverVersion: string
  sha256: string | null
  sidecar: string | null
  site: string
  tables: string[]
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
  const database = await openCkanDatabase(options.databaseUrl, {readOnly: false, statementTimeoutMs: 60_000})
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
  const site = options.site || facts.identity.database
  const at = options.now ?? new Date()
  const dir = resolve(options.dir)
  const file = join(dir, backupFileName({at, dumpFormat: 'pg_dump-custom', keyId: encryption.recipient.keyId, site}))
  await prepareFolder(dir, options.dryRun ?? false)
  const planned: BackupResult = {
    bytes: null,
    database: parsed.redacted,
    dryRun: true,
    dumpFormat: 'pg_dump-custom',
    dumpedWith: `pg_dump ${dumpMajor}`,
    encryption: encryption.recipient,
    file,
    serverVersion: facts.serverVersion,
    sha256: null,
    sidecar: null,
    site,
    tables: [],
  }
  if (options.dryRun) return planned

  // The password (from the user info or ?password=) goes to pg_dump in PGPASSWORD, never in argv.
  const {password, url} = toLibpqConnection(options.databaseUrl)
  const dump = startPgTool('pg_dump', ['--format=custom', '--no-password', `--dbname=${url}`], {
    binFolder: options.pgBin,
    password,
  })
  const restore = startPgTool('pg_restore', ['--list'], {binFolder: options.pgBin, collectStdout: true})
  const sink = new BestEffortSink(restore.child.stdin!)
  const plain = countingTee(
    options.onProgress,
    (chunk) => sink.write(chunk),
    () => sink.end(),
  )
  dump.child.stdout!.on('error', (error) => plain.destroy(error))
  dump.child.stdout!.pipe(plain)

  const written = await writeEncryptedBackup({
    encryption,
    file,
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
    plain,
    signal: options.signal,
    stop: () => stopTools([dump, restore]),
  })
  return finishBackup(planned, written, facts, at)
}

/**
 * Backs up the embedded sandbox (PGlite) with pglite-tools' pg_dump build, whose only output
 * is plain SQL (`ckan-db_<site>_<time>_<key>.sql.gpg`): the machine's pg_dump is older than
 * PGlite's PostgreSQL and refuses to dump it. Same encryption, sidecar and atomic write.
 */
export async function backupEmbeddedDatabase(options: EmbeddedBackupOptions): Promise<BackupResult> {
  const encryption = await openRecipient(options.recipient)
  const facts = await readDatabaseFacts({query: async (text: string) => options.db.query(text)} as unknown as Queryable)
  const site = options.site || facts.identity.database
  const at = options.now ?? new Date()
  const dir = resolve(options.dir)
  const file = join(dir, backupFileName({at, dumpFormat: 'plain-sql', keyId: encryption.recipient.keyId, site}))
  await prepareFolder(dir, options.dryRun ?? false)
  const planned: BackupResult = {
    bytes: null,
    database: 'embedded PGlite',
    dryRun: true,
    dumpFormat: 'plain-sql',
    dumpedWith: 'pglite-tools pgDump',
    encryption: encryption.recipient,
    file,
    serverVersion: facts.serverVersion,
    sha256: null,
    sidecar: null,
    site,
    tables: [],
  }
  if (options.dryRun) return planned
  const {pgDump} = await import('@electric-sql/pglite-tools/pg_dump')
  // The WASM pg_dump builds the dump in memory (its virtual file system); it never touches the disk.
  const searchPath =
    (await options.db.query<{search_path: string}>('SHOW search_path')).rows[0]?.search_path ?? 'public'
  const dumped = await pgDump({pg: options.db})
  // The WASM pg_dump opens its snapshot transaction on PGlite's one shared session and exits
  // without ending it (a real server ends it when the connection closes). Left open, the socket
  // server would serve only its last client and every other (the emulator) would wait forever.
  // It also empties search_path for the session, which every other client shares.
  if (options.db.isInTransaction()) await options.db.exec('ROLLBACK')
  await options.db.query(`SELECT pg_catalog.set_config('search_path', $1, false)`, [searchPath])
  const inspector = new PlainSqlInspector()
  const plain = countingTee(
    options.onProgress,
    async (chunk) => inspector.feed(chunk),
    () => {},
  )
  Readable.fromWeb(dumped.stream() as import('node:stream/web').ReadableStream<Uint8Array>).pipe(plain)
  const written = await writeEncryptedBackup({
    encryption,
    file,
    async finish() {
      const report = inspector.finish()
      if (!report.looksLikeDump || !report.complete) {
        throw new MigrateError('pglite-tools produced an incomplete dump', {
          exitCode: EXIT_CODES.unexpected,
          suggestion: 'Run the backup again; report it if it repeats.',
        })
      }
      return report.tables
    },
    plain,
    signal: options.signal,
    stop() {},
  })
  return finishBackup(planned, written, facts, at)
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

type DatabaseFacts = {identity: DatabaseIdentity; serverMajor: number; serverVersion: string}

async function readDatabaseFacts(sql: Queryable): Promise<DatabaseFacts> {
  const version = await sql.query<{server_version: string; server_version_num: string}>(
    `SELECT current_setting('server_version') AS server_version, current_setting('server_version_num') AS server_version_num`,
  )
  const row = version.rows[0]!
  const database = await sql.query<{database: string}>('SELECT current_database() AS database')
  // Also proves this is a CKAN database ("user" missing → notCkanDatabase).
  const oldest = await sql.query<{id: string}>('SELECT id FROM "user" ORDER BY created NULLS LAST, id LIMIT 1')
  return {
    identity: {database: database.rows[0]!.database, oldestUserId: oldest.rows[0]?.id ?? null},
    serverMajor: Math.floor(Number(row.server_version_num) / 10_000),
    serverVersion: row.server_version.split(' ')[0]!,
  }
}

async function openRecipient(choice: RecipientChoice): Promise<Encryption> {
  return 'keyFile' in choice ? recipientFromKeyFile(choice.keyFile) : recipientFromGpgKeyring(choice.keyId)
}

/** Creates the backup folder 0700 (or, in a dry run, checks that it could). */
async function prepareFolder(dir: string, dryRun: boolean): Promise<void> {
  try {
    if (!dryRun) {
      await ensureFolderForSecrets(dir)
      await access(dir, constants.W_OK)
      return
    }
    let existing = dir
    for (;;) {
      try {
        await stat(existing)
        break
      } catch {
        if (dirname(existing) === existing) break
        existing = dirname(existing)
      }
    }
    if (!(await stat(existing)).isDirectory()) throw Object.assign(new Error('not a folder'), {code: 'ENOTDIR'})
    await access(existing, constants.W_OK)
  } catch (error) {
    throw folderError(
      dir,
      error,
      'the backup folder',
      'Pass --dir with a folder this user may create and write (it is made 0700).',
    )
  }
}

/** Passes the plain dump on, counting bytes for progress and copying each chunk to a side reader. */
function countingTee(
  onProgress: ((bytes: number) => void) | undefined,
  side: (chunk: Buffer) => Promise<void>,
  end: () => void,
): Transform {
  let bytes = 0
  return new Transform({
    flush(callback) {
      end()
      callback()
    },
    transform(chunk: Buffer, _encoding, callback) {
      bytes += chunk.length
      onProgress?.(bytes)
      side(chunk).then(
        () => callback(null, chunk),
        (error: unknown) => callback(error as Error),
      )
    },
  })
}

type WrittenBackup = {bytes: number; sha256: string; tables: string[]; temporary: string}

/**
 * Encrypts `plain` into a temporary file next to `file` (0600, exclusive create), hashing the
 * ciphertext as it goes, then lets `finish` check the producers and name the tables. Any failure
 * removes the temporary file and stops the producers.
 */
async function writeEncryptedBackup(options: {
  encryption: Encryption
  file: string
  finish: () => Promise<string[]>
  plain: Transform
  signal: AbortSignal | undefined
  stop: () => void
}): Promise<WrittenBackup> {
  const temporary = join(dirname(options.file), `.${basename(options.file)}.${randomBytes(4).toString('hex')}.partial`)
  const hash = createHash('sha256')
  let bytes = 0
  try {
    const {done, output} = await options.encryption.encrypt(options.plain)
    const hashing = new PassThrough()
    hashing.on('data', (chunk: Buffer) => {
      bytes += chunk.length
      hash.update(chunk)
    })
    await pipeline(output, hashing, createWriteStream(temporary, {flags: 'wx', mode: 0o600}), {signal: options.signal})
    await done
    const tables = await options.finish()
    const handle = await open(temporary, 'r')
    try {
      await handle.sync()
    } finally {
      await handle.close()
    }
    return {bytes, sha256: hash.digest('hex'), tables, temporary}
  } catch (error) {
    options.stop()
    options.plain.destroy()
    await rm(temporary, {force: true})
    throw translateWriteError(error, options.signal)
  }
}

async function finishBackup(
  planned: BackupResult,
  written: WrittenBackup,
  facts: DatabaseFacts,
  at: Date,
): Promise<BackupResult> {
  const {file} = planned
  const sidecar: BackupSidecar = {
    bytes: written.bytes,
    createdAt: at.toISOString(),
    dumpFormat: planned.dumpFormat,
    dumpedWith: planned.dumpedWith,
    encryption: planned.encryption,
    file: basename(file),
    format: SIDECAR_FORMAT,
    identity: facts.identity,
    serverVersion: facts.serverVersion,
    sha256: written.sha256,
    site: planned.site,
    tables: written.tables,
    tool: SIDECAR_TOOL,
  }
  const sidecarPath = sidecarPathOf(file)
  try {
    if (
      await stat(file).then(
        () => true,
        () => false,
      )
    ) {
      throw new MigrateError(`${file} already exists`, {
        exitCode: EXIT_CODES.writeFailed,
        suggestion: 'Wait a second and run the backup again (the name holds the time to the second).',
      })
    }
    await writeFileAtomically(sidecarPath, `${JSON.stringify(sidecar, null, 2)}\n`, 0o600)
    await rename(written.temporary, file)
    await syncFolder(dirname(file))
  } catch (error) {
    await rm(written.temporary, {force: true})
    await rm(sidecarPath, {force: true})
    throw translateWriteError(error, undefined)
  }
  return {
    ...planned,
    bytes: written.bytes,
    dryRun: false,
    sha256: written.sha256,
    sidecar: sidecarPath,
    tables: written.tables,
  }
}

function stopTools(tools: RunningTool[]): void {
  for (const tool of tools) if (tool.child.exitCode === null && !tool.child.killed) tool.child.kill('SIGTERM')
}

function translateWriteError(error: unknown, signal: AbortSignal | undefined): unknown {
  if (error instanceof MigrateError) return error
  if (signal?.aborted)
    return signal.reason instanceof MigrateError
      ? signal.reason
      : new MigrateError('Interrupted', {exitCode: EXIT_CODES.interrupted})
  const code = (error as NodeJS.ErrnoException).code
  if (code === 'ENOSPC' || code === 'EDQUOT' || code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
    const translated = translateSystemError(error)
    if (translated)
      return new MigrateError(`${translated.message} (nothing was left behind)`, {
        cause: error,
        exitCode: EXIT_CODES.writeFailed,
        suggestion: translated.suggestion,
      })
  }
  return error
}

function describeStreamError(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error)
  return message.split('\n')[0]!.replace(/^Error (decrypting|reading) message:\s*/, '')
}
