import {randomBytes} from 'node:crypto'
import fs from 'node:fs'
import {type FileHandle, open, rename, rm} from 'node:fs/promises'
import {basename, dirname, join} from 'node:path'
import type {Writable} from 'node:stream'
import {finished} from 'node:stream/promises'
import {promisify} from 'node:util'

/**
 * The one way ckan-migrate writes a file it must not lose or leave half written (secret files,
 * CSV reports, the per-user CSV, service config files, encrypted backups): a temporary file in
 * the target's folder, created exclusively with its final mode before its first byte, written,
 * fsync'd, renamed over the target, and the folder fsync'd. A crash leaves the old file or the
 * new one, never half of either; on any failure the temporary file is removed.
 */

/** The whole contents, or a writer for large outputs (a stream into the file; it may end it). */
export type DurableContents<T> = string | Uint8Array | ((out: Writable) => Promise<T>)

export type NewFileOptions = {
  /** The file's mode (0600 for anything holding a secret), set before the first byte whatever the umask. */
  mode: number
  /** Runs on the new, still empty file before its mode is set (a config file's chown). */
  beforeWrite?: (file: FileHandle) => Promise<void>
}

export type DurableWriteOptions = NewFileOptions & {
  /**
   * Runs once the new contents are complete and fsync'd, just before they replace the target (a
   * check that the target did not change, a sidecar): throwing keeps the target as it was.
   */
  beforeRename?: () => Promise<void>
  /** false for a caller that writes many files into one folder and calls syncFolder once. */
  syncFolder?: boolean
}

/** Replaces (or creates) `path` atomically and durably; returns what a writer returned. */
export async function writeDurably(
  path: string,
  contents: string | Uint8Array,
  options: DurableWriteOptions,
): Promise<void>
export async function writeDurably<T>(
  path: string,
  contents: (out: Writable) => Promise<T>,
  options: DurableWriteOptions,
): Promise<T>
export async function writeDurably<T>(
  path: string,
  contents: DurableContents<T>,
  options: DurableWriteOptions,
): Promise<T | void> {
  const folder = dirname(path)
  const temporary = join(folder, `.${basename(path)}.${randomBytes(6).toString('hex')}.partial`)
  let result: T | void
  try {
    result = await createDurableFile(temporary, contents, options)
    await options.beforeRename?.()
    await rename(temporary, path)
  } catch (error) {
    // A failed write (ENOSPC, EIO) carries no path, or the temporary one: name the target.
    const failure = error as NodeJS.ErrnoException
    if (failure.code && (failure.path === undefined || failure.path === temporary)) failure.path = path
    await rm(temporary, {force: true})
    throw error
  }
  if (options.syncFolder !== false) await syncFolder(folder)
  return result
}

/**
 * Creates `path`, which must not exist ('wx': never through a link, never over a file), with its
 * mode set before the first byte, writes it and fsyncs it. On failure the file is removed; an
 * existing file (EEXIST) is left alone. The folder is not fsync'd (writeDurably does that).
 */
export async function createDurableFile<T>(
  path: string,
  contents: DurableContents<T>,
  options: NewFileOptions,
): Promise<T | void> {
  if (typeof contents !== 'function' && !options.beforeWrite) return createSmallFile(path, contents, options.mode)
  const handle = await open(path, 'wx', options.mode)
  try {
    await options.beforeWrite?.(handle)
    // After a chown (which clears set-id bits) and whatever the umask took away.
    await handle.chmod(options.mode)
    if (typeof contents === 'function') return await streamInto(handle, contents)
    await handle.writeFile(contents)
    await handle.sync()
  } catch (error) {
    noteBytesNeeded(error, contents)
    await handle.close().catch(() => {})
    await rm(path, {force: true})
    throw error
  }
  await handle.close()
}

const fd = {
  close: promisify(fs.close),
  fchmod: promisify(fs.fchmod),
  fsync: promisify(fs.fsync),
  open: promisify(fs.open),
  write: promisify(fs.write),
}

/**
 * createDurableFile of given contents, on a file descriptor rather than a FileHandle: the same
 * steps with less machinery per step, for callers writing thousands of small files (bundle).
 */
async function createSmallFile(path: string, contents: string | Uint8Array, mode: number): Promise<void> {
  const bytes = typeof contents === 'string' ? Buffer.from(contents, 'utf8') : contents
  const descriptor = await fd.open(path, 'wx', mode)
  try {
    // Whatever the umask took away.
    await fd.fchmod(descriptor, mode)
    for (let offset = 0; offset < bytes.byteLength;) {
      offset += (await fd.write(descriptor, bytes, offset, bytes.byteLength - offset)).bytesWritten
    }
    await fd.fsync(descriptor)
  } catch (error) {
    noteBytesNeeded(error, contents)
    await fd.close(descriptor).catch(() => {})
    await rm(path, {force: true})
    throw error
  }
  await fd.close(descriptor)
}

/**
 * On a failed write (ENOSPC), records how much the file needed: its whole size when the
 * contents were given, (streamInto records what reached the disk when a writer streamed them).
 */
function noteBytesNeeded(error: unknown, contents: DurableContents<unknown>): void {
  const failure = error as NodeJS.ErrnoException & {bytesNeeded?: number}
  if (!failure?.code) return
  if (typeof contents === 'string') failure.bytesNeeded = Buffer.byteLength(contents)
  else if (contents instanceof Uint8Array) failure.bytesNeeded = contents.byteLength
}

/**
 * Gives the writer a stream into the open file and waits for it to end: the stream fsyncs the
 * file (flush) and closes it. A stream the writer left open is ended; a failed one is destroyed.
 */
async function streamInto<T>(handle: FileHandle, write: (out: Writable) => Promise<T>): Promise<T> {
  const out = handle.createWriteStream({flush: true})
  try {
    const result = await write(out)
    if (!out.writableEnded) out.end()
    await finished(out)
    return result
  } catch (error) {
    // What reached the disk before a failed write (ENOSPC): the file needed more than that.
    const failure = error as NodeJS.ErrnoException & {bytesAtLeast?: number}
    if (failure?.code) failure.bytesAtLeast = out.bytesWritten
    out.destroy()
    await finished(out).catch(() => {})
    throw error
  }
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
