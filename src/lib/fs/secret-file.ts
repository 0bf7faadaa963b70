import {chmod, mkdir, stat} from 'node:fs/promises'
import {dirname, resolve} from 'node:path'

import {EXIT_CODES, MigrateError} from '../errors.js'
import {writeDurably} from './durable-file.js'

/**
 * Creates a folder of ours (a run folder, a bundle folder, the sandbox) and makes sure it is
 * 0700, tightening it if it already exists. Never call it on a folder the user named for
 * something else (a report's folder): use ensureFolder there.
 */
export async function ensurePrivateFolder(folder: string): Promise<void> {
  await makeFolders(folder)
  await chmod(folder, 0o700)
}

/** Creates a folder (0700) when missing; an existing folder keeps its mode. */
export async function ensureFolder(folder: string): Promise<void> {
  await makeFolders(folder)
}

/**
 * `mkdir -p` with mode 0700 that reports the real reason it failed: Node's recursive mkdir says
 * ENOENT when the first missing folder cannot be made on a read-only file system (EROFS) or
 * without permission (EACCES), so on ENOENT the missing folders are made one at a time, which
 * fails with the error that matters. Returns the first folder it created, as mkdir does.
 */
export async function makeFolders(folder: string): Promise<string | undefined> {
  try {
    return await mkdir(folder, {mode: 0o700, recursive: true})
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
    const missing: string[] = []
    let at = resolve(folder)
    while (
      !(await stat(at).then(
        () => true,
        () => false,
      ))
    ) {
      missing.unshift(at)
      const parent = dirname(at)
      if (parent === at) break
      at = parent
    }
    for (const path of missing) {
      try {
        await mkdir(path, {mode: 0o700})
      } catch (stepError) {
        if ((stepError as NodeJS.ErrnoException).code !== 'EEXIST') throw stepError
      }
    }
    return missing[0]
  }
}

/**
 * Makes sure secrets may be written into `folder`: created 0700 when missing; an existing folder
 * that others can enter is refused (never silently chmod'ed: it may be /tmp or a home folder).
 */
export async function ensureFolderForSecrets(folder: string): Promise<void> {
  const created = await makeFolders(folder)
  if (created !== undefined) {
    await chmod(folder, 0o700)
    return
  }
  const info = await stat(folder)
  if ((info.mode & 0o077) !== 0) {
    throw new MigrateError(
      `${folder} can be entered by other users (mode ${(info.mode & 0o777).toString(8)}); files holding secrets are only written into private folders`,
      {
        exitCode: EXIT_CODES.writeFailed,
        suggestion: `Choose a new folder (it is created 0700), or chmod 700 ${folder} if it is yours alone.`,
      },
    )
  }
}

/**
 * Writes a file that holds secrets: 0600 inside a 0700 folder, atomically and durably
 * (writeDurably: a temporary file in the same folder, fsync'd, renamed over the target, the folder
 * fsync'd), so a crash leaves the old file or the new one, never half of either.
 */
export async function writeSecretFile(path: string, contents: string | Uint8Array): Promise<void> {
  const folder = dirname(path)
  await ensureFolderForSecrets(folder)
  await writeFileAtomically(path, contents, 0o600)
}

/**
 * Atomic, durable replace of a file with the given mode (writeDurably); `syncFolder: false` for a
 * caller that writes many files and fsyncs the folder once. The folder must exist.
 */
export async function writeFileAtomically(
  path: string,
  contents: string | Uint8Array,
  mode: number,
  options: {syncFolder?: boolean} = {},
): Promise<void> {
  await writeDurably(path, contents, {mode, syncFolder: options.syncFolder})
}

export {syncFolder} from './durable-file.js'
