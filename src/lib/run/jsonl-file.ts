import {createReadStream} from 'node:fs'
import {type FileHandle, open, readFile} from 'node:fs/promises'
import {StringDecoder} from 'node:string_decoder'

/** An open file nobody appended to for this long is closed (reopened by the next append). */
const IDLE_CLOSE_MS = 2000

type Pending = {line: string; reject: (error: unknown) => void; resolve: () => void}

/**
 * An append-only JSON Lines file. Each append is one write of whole lines followed by fsync,
 * so a record counts as stored only once it is on disk. Appends are all-or-nothing: a write
 * that fails part-way (ENOSPC, EDQUOT, EIO) is cut back to where it started before the error
 * is passed on, and a torn last line left by a crash mid-write (no newline at its end) is cut
 * when the file is next opened for writing. A record counts only when its line ends in a
 * newline, for readers too, so what a reader sees is what the writer acknowledged. Appends made while a write is in flight
 * are grouped into the next write (one fsync for many records), which keeps throughput high
 * under concurrency without weakening the guarantee: append() resolves after its fsync.
 *
 * The file stays open between writes (closed by close(), or after a while without appends), so
 * a busy run pays one write and one fsync per batch, not an open and a close as well.
 */
export class JsonlFile<T> {
  readonly mode: number
  readonly path: string
  /** Lines of appendDeferred(), written with the next batch (no fsync of their own). */
  #deferred = ''
  #flushing: Promise<void> | undefined
  #handle: FileHandle | undefined
  #idleTimer: NodeJS.Timeout | undefined
  #pending: Pending[] = []
  /** Whether the file's tail was checked for a torn line (a crash mid-write) by this instance. */
  #tailChecked = false

  constructor(path: string, mode = 0o600) {
    this.path = path
    this.mode = mode
  }

  /** Appends records and resolves once they are fsync'd. */
  async append(...records: T[]): Promise<void> {
    let line = ''
    for (const record of records) line += `${JSON.stringify(record)}\n`
    const done = new Promise<void>((resolve, reject) => {
      this.#pending.push({line, reject, resolve})
    })
    this.#kick()
    return done
  }

  /**
   * Queues records that need no fsync of their own (advice, such as "this token was issued":
   * the token store is the truth). They go to disk with the next append(), flush() or close(),
   * in order; a crash before then loses them, which must cost nothing but a re-check.
   */
  appendDeferred(...records: T[]): void {
    for (const record of records) this.#deferred += `${JSON.stringify(record)}\n`
  }

  /** Writes and fsyncs what is queued (deferred records too), then closes the file. */
  async close(): Promise<void> {
    await this.flush()
    clearTimeout(this.#idleTimer)
    this.#idleTimer = undefined
    while (this.#flushing) await this.#flushing
    const handle = this.#handle
    this.#handle = undefined
    await handle?.close()
  }

  /** Waits until every append so far, and every deferred record, is on disk (fsync'd). */
  async flush(): Promise<void> {
    if (this.#deferred !== '') await this.append()
    else while (this.#flushing) await this.#flushing
  }

  /**
   * Reads every complete record. A torn last line (a crash in the middle of a write: no newline
   * at its end, even if it parses) is skipped: it was never acknowledged, so nothing relied on it.
   */
  async readAll(): Promise<T[]> {
    let text: string
    try {
      text = await readFile(this.path, 'utf8')
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return []
      throw error
    }
    const records: T[] = []
    const lines = text.split('\n')
    // The part after the last newline is a torn write (or nothing).
    lines.pop()
    for (const line of lines) {
      const record = parseLine<T>(line)
      if (record !== undefined) records.push(record)
    }
    return records
  }

  /** Every complete record, one at a time (a big file never sits in memory); a torn last line skipped as in readAll(). */
  async *stream(): AsyncGenerator<T> {
    const input = createReadStream(this.path, {highWaterMark: 64 * 1024})
    const opened = new Promise<boolean>((resolve, reject) => {
      input.once('open', () => resolve(true))
      input.once('error', (error: NodeJS.ErrnoException) => (error.code === 'ENOENT' ? resolve(false) : reject(error)))
    })
    if (!(await opened)) return
    const decoder = new StringDecoder('utf8')
    let rest = ''
    try {
      for await (const chunk of input as AsyncIterable<Buffer>) {
        const lines = (rest + decoder.write(chunk)).split('\n')
        // The last piece has no newline yet: the next chunk continues it, or it is a torn write.
        rest = lines.pop()!
        for (const line of lines) {
          const record = parseLine<T>(line.endsWith('\r') ? line.slice(0, -1) : line)
          if (record !== undefined) yield record
        }
      }
    } finally {
      input.destroy()
    }
  }

  #kick(): void {
    if (!this.#flushing) this.#flushing = this.#flush()
  }

  async #flush(): Promise<void> {
    while (this.#pending.length > 0) {
      const batch = this.#pending
      this.#pending = []
      let text = this.#deferred
      this.#deferred = ''
      for (const entry of batch) text += entry.line
      try {
        const handle = await this.#open()
        // A torn last line (kill -9 mid-write) must not swallow the next record: cut it first.
        if (!this.#tailChecked) await cutTornTail(handle)
        this.#tailChecked = true
        if (text !== '') await this.#appendWhole(handle, text)
        for (const entry of batch) entry.resolve()
      } catch (error) {
        // A handle that failed once is not trusted again (the next batch reopens the file).
        const handle = this.#handle
        this.#handle = undefined
        await handle?.close().catch(() => {})
        for (const entry of batch) entry.reject(error)
      }
    }
    this.#flushing = undefined
    this.#armIdleClose()
  }

  /**
   * Writes `text` at the end and fsyncs it, or leaves the file as it was: on failure the file is
   * truncated back to its size before the write. The error then names the file and how many
   * bytes the write needed (for "no space left" messages).
   */
  async #appendWhole(handle: FileHandle, text: string): Promise<void> {
    const bytes = Buffer.from(text, 'utf8')
    const {size} = await handle.stat()
    try {
      let written = 0
      while (written < bytes.length) {
        const result = await handle.write(bytes, written, bytes.length - written)
        written += result.bytesWritten
      }
      await handle.sync()
    } catch (error) {
      // If even the cut fails the tail is torn, and the next open cuts it (see cutTornTail).
      await handle
        .truncate(size)
        .then(() => handle.sync())
        .catch(() => {})
      throw Object.assign(error as Error, {bytesNeeded: bytes.length, path: this.path})
    }
  }

  async #open(): Promise<FileHandle> {
    this.#handle ??= await open(this.path, this.#tailChecked ? 'a' : 'a+', this.mode).catch((error: unknown) => {
      throw Object.assign(error as Error, {path: this.path})
    })
    return this.#handle
  }

  #armIdleClose(): void {
    if (!this.#handle) return
    if (this.#idleTimer) {
      this.#idleTimer.refresh()
      return
    }
    this.#idleTimer = setTimeout(() => {
      this.#idleTimer = undefined
      if (this.#flushing || !this.#handle) return
      const handle = this.#handle
      this.#handle = undefined
      // Closing counts as a flush, so an append meanwhile waits for it and then reopens.
      this.#flushing = handle
        .close()
        .catch(() => {})
        .then(() => {
          this.#flushing = undefined
          if (this.#pending.length > 0) this.#kick()
        })
    }, IDLE_CLOSE_MS)
    this.#idleTimer.unref()
  }
}

function parseLine<T>(line: string): T | undefined {
  if (line.trim() === '') return undefined
  try {
    return JSON.parse(line) as T
  } catch {
    // torn write: ignored (see readAll)
    return undefined
  }
}

/**
 * Cuts a torn last line (the file does not end in a newline: a crash or a failed write in the
 * middle of an append) back to the end of the last whole line.
 */
async function cutTornTail(handle: FileHandle): Promise<void> {
  const {size} = await handle.stat()
  if (size === 0) return
  const chunk = Buffer.alloc(64 * 1024)
  let end = size
  let first = true
  while (end > 0) {
    const start = Math.max(0, end - chunk.length)
    const {bytesRead} = await handle.read(chunk, 0, end - start, start)
    const newline = chunk.subarray(0, bytesRead).lastIndexOf(0x0a)
    if (first && newline === bytesRead - 1) return
    first = false
    if (newline !== -1) {
      await cut(handle, start + newline + 1)
      return
    }
    end = start
  }
  await cut(handle, 0)
}

async function cut(handle: FileHandle, length: number): Promise<void> {
  await handle.truncate(length)
  await handle.sync()
}
