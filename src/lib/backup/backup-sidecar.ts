import {createHash} from 'node:crypto'
import {createReadStream} from 'node:fs'
import {basename} from 'node:path'
import {pipeline} from 'node:stream/promises'

import {EXIT_CODES, MigrateError} from '../errors.js'
import {assertRegularFile, readFailure, readInputText, SMALL_FILE_LIMIT} from '../fs/input-file.js'
import {compactUtcTimestamp} from '../fs/safe-file-name.js'
import type {BackupRecipient} from './backup-encryption.js'

export const SIDECAR_FORMAT = 1
export const SIDECAR_TOOL = 'ckan-migrate backup'

/** `pg_dump --format=custom` (a real server) or plain SQL (the embedded PGlite site, via pglite-tools). */
export type DumpFormat = 'pg_dump-custom' | 'plain-sql'

/** Which database a backup is of: compared by purge-keys before it trusts a backup. */
export type DatabaseIdentity = {
  /** current_database() */
  database: string
  /** id of the oldest "user" row: a random UUID that stays with the site for its whole life. */
  oldestUserId: string | null
}

/** `<backup>.json`, written next to every backup: no secrets, only what proves the backup. */
export type BackupSidecar = {
  bytes: number
  createdAt: string
  dumpFormat: DumpFormat
  /** e.g. "pg_dump 15" or "pglite-tools pgDump". */
  dumpedWith: string
  encryption: BackupRecipient
  file: string
  format: typeof SIDECAR_FORMAT
  identity: DatabaseIdentity
  serverVersion: string
  sha256: string
  site: string
  /** schema.table names the dump holds (from `pg_restore --list` of the very stream written). */
  tables: string[]
  tool: typeof SIDECAR_TOOL
}

export function sidecarPathOf(file: string): string {
  return `${file}.json`
}

/** Keeps letters, digits, dot, dash and underscore; everything else becomes `_` (never a path). */
export function fileNameSafe(text: string): string {
  const safe = text
    .normalize('NFKD')
    .replaceAll(/[^\w.-]+/g, '_')
    .replaceAll(/_+/g, '_')
    .replace(/^[._-]+/, '')
    .slice(0, 64)
  return safe || 'site'
}

/** `ckan-db_<site>_<UTC timestamp>_<key id>.pgc.gpg` (custom format) or `….sql.gpg` (plain SQL). */
export function backupFileName(options: {at: Date; dumpFormat: DumpFormat; keyId: string; site: string}): string {
  const extension = options.dumpFormat === 'pg_dump-custom' ? 'pgc.gpg' : 'sql.gpg'
  return `ckan-db_${fileNameSafe(options.site)}_${compactUtcTimestamp(options.at)}_${fileNameSafe(options.keyId)}.${extension}`
}

export async function sha256OfFile(path: string): Promise<string> {
  const hash = createHash('sha256')
  // A FIFO or a device would never end (or block): refused before it is opened.
  await assertRegularFile(path)
  await pipeline(createReadStream(path), hash)
  return hash.digest('hex')
}

/** Reads and checks the sidecar of a backup; a missing or foreign one is a one-line badInput. */
export async function readBackupSidecar(file: string): Promise<BackupSidecar> {
  const path = sidecarPathOf(file)
  let text: string
  try {
    text = await readInputText(path, {maxBytes: SMALL_FILE_LIMIT})
  } catch (error) {
    throw new MigrateError(
      `The backup ${basename(file)} has no readable sidecar ${basename(path)} (it ${readFailure(error)})`,
      {
        cause: error,
        exitCode: EXIT_CODES.badInput,
        suggestion: 'Name a backup made by ckan-migrate backup: it writes FILE and FILE.json side by side.',
      },
    )
  }
  let sidecar: BackupSidecar
  try {
    sidecar = JSON.parse(text) as BackupSidecar
  } catch (error) {
    throw new MigrateError(`${path} is not valid JSON`, {
      cause: error,
      exitCode: EXIT_CODES.badInput,
      suggestion: 'Make a new backup with ckan-migrate backup.',
    })
  }
  if (sidecar?.tool !== SIDECAR_TOOL || sidecar.format !== SIDECAR_FORMAT || typeof sidecar.sha256 !== 'string') {
    throw new MigrateError(`${path} was not written by ckan-migrate backup (or by an unknown version)`, {
      exitCode: EXIT_CODES.badInput,
      suggestion: 'Make a new backup with ckan-migrate backup.',
    })
  }
  return sidecar
}
