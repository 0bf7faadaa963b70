import {randomUUID} from 'node:crypto'
import {chmod, mkdir, open, rename, rm} from 'node:fs/promises'
import {dirname, join} from 'node:path'

/** Creates a folder (and its parents) and makes sure the folder itself is 0700. */
export async function ensurePrivateFolder(folder: string): Promise<void> {
  await mkdir(folder, {mode: 0o700, recursive: true})
  await chmod(folder, 0o700)
}

/**
 * Writes a file that holds secrets: 0600 inside a 0700 folder, atomically (a temporary file in the
 * same folder, fsync'd, then renamed over the target), so a crash leaves the old file or the new
 * one, never half of either.
 */
export async function writeSecretFile(path: string, contents: string | Uint8Array): Promise<void> {
  const folder = dirname(path)
  await ensurePrivateFolder(folder)
  await writeFileAtomically(path, contents, 0o600)
}

/** Atomic replace with fsync of the file and of its folder. The folder must exist. */
export async function writeFileAtomically(path: string, contents: string | Uint8Array, mode: number): Promise<void> {
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
  await syncFolder(folder)
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
