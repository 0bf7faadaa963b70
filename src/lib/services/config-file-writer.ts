import {access, constants, type FileHandle, realpath, rm, stat} from 'node:fs/promises'
import {dirname} from 'node:path'

import {EXIT_CODES, MigrateError} from '../errors.js'
import {translateSystemError} from '../system-errors.js'
import {readFailure, readInputFile, SMALL_FILE_LIMIT} from '../fs/input-file.js'
import {createDurableFile, writeDurably} from '../fs/durable-file.js'
import {takeLockFile} from '../fs/lock-file.js'
import {compactUtcTimestamp} from '../fs/safe-file-name.js'

/**
 * Reading and replacing a service's config file (ckan.ini, an env file) safely: symlinks are
 * followed to the real file, text must be UTF-8, a backup beside it is 0600 and keeps its owner, the
 * replace is atomic and durable (writeDurably), mode and owner are kept,
 * and a file that changed since it was read is never overwritten (exit 14).
 */
export type ConfigFile = {
  bytes: Buffer
  gid: number
  mode: number
  /** The real path (symlinks resolved): the file that is read and replaced. */
  path: string
  /** The path as given, for messages. */
  givenPath: string
  text: string
  uid: number
}

const decoder = new TextDecoder('utf-8', {fatal: true, ignoreBOM: true})

export async function readConfigFile(givenPath: string, what: string): Promise<ConfigFile> {
  let path: string
  let bytes: Buffer
  try {
    path = await realpath(givenPath)
    bytes = await readInputFile(path, {maxBytes: SMALL_FILE_LIMIT})
  } catch (error) {
    throw new MigrateError(`The ${what} ${givenPath} ${readFailure(error)}`, {
      cause: error,
      exitCode: EXIT_CODES.badInput,
      suggestion: `Pass the path of the ${what}, readable by the user running ckan-migrate.`,
    })
  }
  let text: string
  try {
    text = decoder.decode(bytes)
  } catch (error) {
    throw new MigrateError(`The ${what} ${givenPath} is not UTF-8 text`, {
      cause: error,
      exitCode: EXIT_CODES.badInput,
      suggestion: 'Convert it to UTF-8 (CKAN reads its config as UTF-8), then run again.',
    })
  }
  const info = await stat(path)
  return {bytes, gid: info.gid, givenPath, mode: info.mode & 0o7777, path, text, uid: info.uid}
}

/** Refuses (exit 13) a file we could not replace: read-only by mode, or a folder we may not write. */
export async function assertReplaceable(file: ConfigFile): Promise<void> {
  if ((file.mode & 0o200) === 0) {
    throw new MigrateError(`${file.givenPath} is read-only (mode ${file.mode.toString(8).padStart(4, '0')})`, {
      exitCode: EXIT_CODES.writeFailed,
      suggestion:
        'Someone made it read-only on purpose: make it writable (chmod u+w) if it is the file to change, then run again.',
    })
  }
  try {
    await access(file.path, constants.W_OK)
    await access(dirname(file.path), constants.W_OK)
  } catch (error) {
    // Root refused (an immutable file: EPERM) or a read-only mount: "run as root" would not help.
    const code = (error as NodeJS.ErrnoException).code
    if (code === 'EROFS' || (code === 'EPERM' && process.getuid?.() === 0)) throw translateSystemError(error)!
    throw new MigrateError(`${file.givenPath} or its folder cannot be written by this user`, {
      cause: error,
      exitCode: EXIT_CODES.writeFailed,
      suggestion: 'Run as the user who owns the config (often root), then run again.',
    })
  }
}

/** Throws exit 14 when the file on disk is no longer what was read. */
export async function assertUnchanged(file: ConfigFile): Promise<void> {
  let current: Buffer | undefined
  try {
    current = await readInputFile(file.path, {maxBytes: SMALL_FILE_LIMIT})
  } catch {
    current = undefined
  }
  if (!current || !current.equals(file.bytes)) {
    throw new MigrateError(`${file.givenPath} changed on disk after ckan-migrate read it; it was not written`, {
      exitCode: EXIT_CODES.fileChanged,
      suggestion: 'Someone else is editing it: let them finish, then run the same command again.',
    })
  }
}

async function keepOwner(handle: FileHandle, file: ConfigFile): Promise<void> {
  try {
    await handle.chown(file.uid, file.gid)
  } catch (error) {
    const sameOwner = process.getuid?.() === file.uid && process.getgid?.() === file.gid
    if (!sameOwner) {
      throw new MigrateError(`Cannot keep the owner of ${file.givenPath} (uid ${file.uid}, gid ${file.gid})`, {
        cause: error,
        exitCode: EXIT_CODES.writeFailed,
        suggestion: 'Run as root or as the owner of the file, so the new file keeps its owner.',
      })
    }
  }
}

/**
 * Writes `<name>.<UTC timestamp>.bak` beside the file with the original bytes: 0600 (it holds the
 * same secrets, and nothing but the admin restoring it needs to read it), owned like the original
 * when this user may give it that owner (else by this user, which is no more readable).
 */
export async function writeBackup(file: ConfigFile, now: Date): Promise<string> {
  const base = `${file.path}.${compactUtcTimestamp(now)}`
  for (let attempt = 0; ; attempt += 1) {
    const path = attempt === 0 ? `${base}.bak` : `${base}-${attempt}.bak`
    try {
      // Never over an older backup: created exclusively, fsync'd (the replace fsyncs the folder).
      await createDurableFile(path, file.bytes, {
        async beforeWrite(handle) {
          await handle.chown(file.uid, file.gid).catch(() => {})
        },
        mode: BACKUP_MODE,
      })
      return path
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST' && attempt < 100) continue
      throw error
    }
  }
}

/** The mode of a backup: read and write for its owner only. */
export const BACKUP_MODE = 0o600

/** Atomic replace keeping mode and owner; `beforeRename` runs last (a test seam), then the change check. */
export async function replaceConfigFile(
  file: ConfigFile,
  text: string,
  beforeRename?: () => Promise<void>,
): Promise<void> {
  await writeDurably(file.path, text, {
    ...sameOwnerAndMode(file),
    async beforeRename() {
      await beforeRename?.()
      await assertUnchanged(file)
    },
  })
}

function sameOwnerAndMode(file: ConfigFile) {
  return {beforeWrite: (handle: FileHandle) => keepOwner(handle, file), mode: file.mode}
}

/**
 * Takes rewrite-config's lock on a config file: `<real path>.ckan-migrate-lock` beside it (the
 * folder is writable: assertReplaceable checked), so two runs, whatever their --out, never edit
 * one file at once. Returns the unlock. A lock left by a killed run is taken over.
 */
export async function lockConfigFile(file: ConfigFile, command: string): Promise<() => Promise<void>> {
  const path = configLockPath(file)
  try {
    await takeLockFile(path, command, {
      busy: (holder) =>
        new MigrateError(
          `${file.givenPath} is being rewritten by another ${holder.command} (pid ${holder.pid}${holder.host ? ` on ${holder.host}` : ''})`,
          {
            exitCode: EXIT_CODES.runConflict,
            suggestion: `Wait for it to finish, then run this again; nothing was changed and no token created. If no ckan-migrate runs, remove ${path}.`,
          },
        ),
      stuck: () =>
        new MigrateError(`Could not lock ${file.givenPath}`, {
          exitCode: EXIT_CODES.runConflict,
          suggestion: `If no ckan-migrate is running, remove ${path}, then run again.`,
        }),
    })
  } catch (error) {
    if (error instanceof MigrateError) throw error
    throw new MigrateError(`Cannot create the lock file ${path}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`, {
      cause: error,
      exitCode: EXIT_CODES.writeFailed,
      suggestion: 'Run as a user who may write the folder of the config file (often root).',
    })
  }
  return () => rm(path, {force: true})
}

export function configLockPath(file: Pick<ConfigFile, 'path'>): string {
  return `${file.path}.ckan-migrate-lock`
}
