import {createHash} from 'node:crypto'
import {access, constants, rm, stat} from 'node:fs/promises'
import {basename, dirname, join, resolve} from 'node:path'
import {PassThrough, type Readable, Transform} from 'node:stream'
import {pipeline} from 'node:stream/promises'

import {EXIT_CODES, MigrateError} from '../errors.js'
import {writeDurably} from '../fs/durable-file.js'
import {ensureFolderForSecrets} from '../fs/secret-file.js'
import type {Queryable} from '../site/ckan-database.js'
import {folderError, translateSystemError} from '../system-errors.js'
import {
  type BackupRecipient,
  type Encryption,
  recipientFromGpgKeyring,
  recipientFromKeyFile,
} from './backup-encryption.js'
import {
  backupFileName,
  type BackupSidecar,
  type DatabaseIdentity,
  type DumpFormat,
  SIDECAR_FORMAT,
  SIDECAR_TOOL,
  sidecarPathOf,
} from './backup-sidecar.js'

/**
 * Writing an encrypted backup, whatever makes the dump: the plan (file name, folder, what the
 * database is), then the plain dump streamed into OpenPGP encryption and into the file through
 * writeDurably (no plain byte touches the disk), and the sidecar, in place before the backup is.
 * `backup` feeds it pg_dump; the sandbox feeds it pglite-tools (src/sandbox/embedded-backup.ts).
 */

/** --recipient-key FILE (OpenPGP.js, in-process) or --key-id ID (the local GnuPG keyring). */
export type RecipientChoice = {keyFile: string} | {keyId: string}

/** What every backup takes, whatever makes its dump. */
export type BackupWriteOptions = {
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

export type DatabaseFacts = {identity: DatabaseIdentity; serverMajor: number; serverVersion: string}

/** A backup about to be written: its result as a dry run reports it, and what writing it needs. */
export type BackupPlan = {at: Date; encryption: Encryption; facts: DatabaseFacts; result: BackupResult}

/** What makes the plain dump: pg_dump (with pg_restore --list reading along) or pglite-tools. */
export type DumpSource = {
  /** The plain dump's bytes. */
  output: Readable
  /** Sees each plain chunk on its way to encryption (pg_restore --list, a SQL reader). */
  inspect(chunk: Buffer): Promise<void>
  /** The plain dump ended. */
  inspected(): void
  /** Once every encrypted byte is written: checks the producers ended well and names the tables. */
  finish(): Promise<string[]>
  /** Stops the producers after a failure. */
  stop(): void
}

export async function openRecipient(choice: RecipientChoice): Promise<Encryption> {
  return 'keyFile' in choice ? recipientFromKeyFile(choice.keyFile) : recipientFromGpgKeyring(choice.keyId)
}

/** The server's version, the database's name and identity; also proves it is a CKAN database. */
export async function readDatabaseFacts(sql: Queryable): Promise<DatabaseFacts> {
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

/** Names the file and makes its folder 0700 (or, in a dry run, checks that it could). */
export async function planBackup(options: {
  /** Redacted database URL, or "embedded PGlite". */
  database: string
  dir: string
  dryRun?: boolean
  dumpedWith: string
  dumpFormat: DumpFormat
  encryption: Encryption
  facts: DatabaseFacts
  now?: Date
  site?: string
}): Promise<BackupPlan> {
  const {dumpFormat, encryption, facts} = options
  const site = options.site || facts.identity.database
  const at = options.now ?? new Date()
  const dir = resolve(options.dir)
  const file = join(dir, backupFileName({at, dumpFormat, keyId: encryption.recipient.keyId, site}))
  await prepareFolder(dir, options.dryRun ?? false)
  const result: BackupResult = {
    bytes: null,
    database: options.database,
    dryRun: true,
    dumpFormat,
    dumpedWith: options.dumpedWith,
    encryption: encryption.recipient,
    file,
    serverVersion: facts.serverVersion,
    sha256: null,
    sidecar: null,
    site,
    tables: [],
  }
  return {at, encryption, facts, result}
}

/**
 * Encrypts the dump into the planned file (writeDurably: 0600 under a temporary name, fsync'd),
 * hashing the ciphertext as it goes; once the producers are checked, writes the sidecar and only
 * then renames the backup into place. Any failure stops the producers and leaves nothing behind.
 */
export async function writeEncryptedBackup(
  plan: BackupPlan,
  source: DumpSource,
  options: {onProgress?: (bytes: number) => void; signal?: AbortSignal} = {},
): Promise<BackupResult> {
  const {file} = plan.result
  const sidecarPath = sidecarPathOf(file)
  const plain = countingTee(options.onProgress, source)
  source.output.on('error', (error) => plain.destroy(error))
  source.output.pipe(plain)
  const hash = createHash('sha256')
  let bytes = 0
  let tables: string[] = []
  let sha256 = ''
  let sidecarWritten = false
  try {
    await writeDurably(
      file,
      async (out) => {
        const {done, output} = await plan.encryption.encrypt(plain)
        const hashing = new PassThrough()
        hashing.on('data', (chunk: Buffer) => {
          bytes += chunk.length
          hash.update(chunk)
        })
        await pipeline(output, hashing, out, {signal: options.signal})
        await done
        tables = await source.finish()
        sha256 = hash.digest('hex')
      },
      {
        async beforeRename() {
          if (await exists(file)) {
            throw new MigrateError(`${file} already exists`, {
              exitCode: EXIT_CODES.writeFailed,
              suggestion: 'Wait a second and run the backup again (the name holds the time to the second).',
            })
          }
          const sidecar: BackupSidecar = {
            bytes,
            createdAt: plan.at.toISOString(),
            dumpFormat: plan.result.dumpFormat,
            dumpedWith: plan.result.dumpedWith,
            encryption: plan.result.encryption,
            file: basename(file),
            format: SIDECAR_FORMAT,
            identity: plan.facts.identity,
            serverVersion: plan.facts.serverVersion,
            sha256,
            site: plan.result.site,
            tables,
            tool: SIDECAR_TOOL,
          }
          await writeDurably(sidecarPath, `${JSON.stringify(sidecar, null, 2)}\n`, {mode: 0o600})
          sidecarWritten = true
        },
        mode: 0o600,
      },
    )
  } catch (error) {
    source.stop()
    plain.destroy()
    // Only our own sidecar: a backup of the same name (and its sidecar) is never touched.
    if (sidecarWritten) await rm(sidecarPath, {force: true})
    throw translateWriteError(error, options.signal)
  }
  return {...plan.result, bytes, dryRun: false, sha256, sidecar: sidecarPath, tables}
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  )
}

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

/** Passes the plain dump on, counting bytes for progress and showing each chunk to the source's reader. */
function countingTee(onProgress: ((bytes: number) => void) | undefined, source: DumpSource): Transform {
  let bytes = 0
  return new Transform({
    flush(callback) {
      source.inspected()
      callback()
    },
    transform(chunk: Buffer, _encoding, callback) {
      bytes += chunk.length
      onProgress?.(bytes)
      source.inspect(chunk).then(
        () => callback(null, chunk),
        (error: unknown) => callback(error as Error),
      )
    },
  })
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
