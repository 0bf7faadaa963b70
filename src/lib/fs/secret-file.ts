import {randomUUID} from 'node:crypto'
import {chmod, mkdir, open, rename, rm, stat} from 'node:fs/promises'
import {dirname, join} from 'node:path'

import {EXIT_CODES, MigrateError} from '../errors.js'

/**
 * Creates a folder of ours (a run folder, a bundle folder, the sandbox) and makes sure it is
 * 0700, tightening it if it already exists. Never call it on a folder the user named for
 * something else (a report's folder): use ensureFolder there.
 */
export async function ensurePrivateFolder(folder: string): Promise<void> {
  await mkdir(folder, {mode: 0o700, recursive: true})
  await chmod(folder, 0o700)
}

/** Creates a folder (0700) when missing; an existing folder keeps its mode. */
export async function ensureFolder(folder: string): Promise<void> {
  await mkdir(folder, {mode: 0o700, recursive: true})
}

/**
 * Makes sure secrets may be written into `folder`: created 0700 when missing; an existing folder
 * that others can enter is refused (never silently chmod'ed: it may be /tmp or a home folder).
 */
export async function ensureFolderForSecrets(folder: string): Promise<void> {
  const created = await mkdir(folder, {mode: 0o700, recursive: true})
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
 * Writes a file that holds secrets: 0600 inside a 0700 folder, atomically (a temporary file in the
 * same folder, fsync'd, then renamed over the target), so a crash leaves the old file or the new
 * one, never half of either.
 */
export async function writeSecretFile(path: string, contents: string | Uint8Array): Promise<void> {
  const folder = dirname(path)
  await ensureFolderForSecrets(folder)
  await writeFileAtomically(path, contents, 0o600)
}

/**
 * Atomic replace with fsync of the file and (unless `syncFolder: false`, for a caller that writes
 * many files and fsyncs the folder once) of its folder. The folder must exist.
 */
export async function writeFileAtomically(
  path: string,
  contents: string | Uint8Array,
  mode: number,
  options: {syncFolder?: boolean} = {},
): Promise<void> {
  const folder = dirname(path)
  const temporary = join(folder, `.${randomUUID()}.tmp`)
  try {
    const handle = await open(temporary, 'wx', mode)
    try {
      await handle.writeFile(contents)
      await handle.chmod(mode)
      await handle.sync()
    } finally {
      await handle.close()
    }
    await rename(temporary, path)
  } catch (error) {
    await rm(temporary, {force: true})
    throw error
  }
  if (options.syncFolder !== false) await syncFolder(folder)
}

/** fsync a folder so a rename or a new file in it survives a power cut. */
export async function syncFolder(folder: string): Promise<void> {
  const handle = await open(folder, 'r')
  try {
    await handle.sync()
  } catch {
    // Some file systems do not support fsync on folders; the rename is still atomic.
  } finally {
    await handle.close()
  }
}
