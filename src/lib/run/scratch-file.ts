import {createWriteStream, type WriteStream} from 'node:fs'
import {rm} from 'node:fs/promises'

import {JsonlFile} from './jsonl-file.js'

/**
 * A private (0600) JSON Lines scratch file in the run folder: written once front to back, read
 * back by streaming, removed at the end of the run. Nothing is fsync'd: it is rebuilt by every
 * run, so a crash loses nothing that matters. This is how issue-tokens keeps memory flat: the
 * queue of users and the per-user outcomes for the report live on disk, not in arrays.
 */
export class ScratchWriter<T> {
  readonly path: string
  #error: Error | undefined
  /** Bytes handed to the stream so far. */
  #queued = 0
  readonly #stream: WriteStream

  private constructor(path: string, stream: WriteStream) {
    this.path = path
    this.#stream = stream
    stream.on('error', (error: NodeJS.ErrnoException) => {
      // A failed write (ENOSPC) carries no path; the message must name the file and, as the
      // writers of src/lib/fs do, how much it was to hold (system-errors.ts).
      this.#error ??= Object.assign(error, {bytesAtLeast: this.#queued, path: error.path ?? path})
    })
  }

  /** Creates (or empties) the file, 0600. */
  static async create<T>(path: string): Promise<ScratchWriter<T>> {
    await rm(path, {force: true})
    const stream = createWriteStream(path, {flags: 'wx', highWaterMark: 1024 * 1024, mode: 0o600})
    await new Promise<void>((resolve, reject) => {
      stream.once('open', () => resolve())
      stream.once('error', reject)
    })
    return new ScratchWriter<T>(path, stream)
  }

  /** Finishes writing (rethrows a write failure). */
  async end(): Promise<void> {
    if (!this.#stream.writableEnded) {
      await new Promise<void>((resolve) => {
        this.#stream.end(() => resolve())
      })
    }
    if (this.#error) throw this.#error
  }

  /** Queues a record; waits only when the stream's buffer is full (the disk is behind). */
  async write(record: T): Promise<void> {
    if (this.#error) throw this.#error
    const line = `${JSON.stringify(record)}\n`
    this.#queued += Buffer.byteLength(line)
    if (this.#stream.write(line)) return
    await new Promise<void>((resolve) => {
      const done = () => {
        this.#stream.off('drain', done)
        this.#stream.off('close', done)
        resolve()
      }
      this.#stream.on('drain', done)
      this.#stream.on('close', done)
    })
    if (this.#error) throw this.#error
  }
}

/** The records of a scratch file, in order, one at a time. */
export function readScratch<T>(path: string): AsyncGenerator<T> {
  return new JsonlFile<T>(path).stream()
}

export async function removeScratch(path: string): Promise<void> {
  await rm(path, {force: true})
}
