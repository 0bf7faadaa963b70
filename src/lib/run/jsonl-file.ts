import {createReadStream} from 'node:fs'
import {type FileHandle, open, readFile} from 'node:fs/promises'
import {createInterface} from 'node:readline'

/** An open file nobody appended to for this long is closed (reopened by the next append). */
const IDLE_CLOSE_MS = 2000

type Pending = {line: string; reject: (error: unknown) => void; resolve: () => void}

/**
 * An append-only JSON Lines file. Each append is one write of whole lines followed by fsync,
 * so a record counts as stored only once it is on disk. Appends made while a write is in flight
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
   * Reads every complete record. A torn last line (a crash in the middle of a write) is skipped:
   * it was never acknowledged, so nothing relied on it.
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
    for (const line of text.split('\n')) {
      const record = parseLine<T>(line)
      if (record !== undefined) records.push(record)
    }
    return records
  }

  /** Every complete record, one at a time (a big file never sits in memory); torn lines skipped as in readAll(). */
  async *stream(): AsyncGenerator<T> {
    const input = createReadStream(this.path, {encoding: 'utf8', highWaterMark: 64 * 1024})
    const opened = new Promise<boolean>((resolve, reject) => {
      input.once('open', () => resolve(true))
      input.once('error', (error: NodeJS.ErrnoException) => (error.code === 'ENOENT' ? resolve(false) : reject(error)))
    })
    if (!(await opened)) return
    const lines = createInterface({crlfDelay: Number.POSITIVE_INFINITY, input})
    try {
      for await (const line of lines) {
        const record = parseLine<T>(line)
        if (record !== undefined) yield record
      }
    } finally {
      lines.close()
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
        // A torn last line (kill -9 mid-write) must not swallow the next record: end it first.
        if (!this.#tailChecked) text = (await tornTailPrefix(handle)) + text
        this.#tailChecked = true
        if (text !== '') {
          await handle.appendFile(text)
          await handle.sync()
        }
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

  async #open(): Promise<FileHandle> {
    this.#handle ??= await open(this.path, this.#tailChecked ? 'a' : 'a+', this.mode)
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

/** '\n' when the file does not end with a newline (a torn write), else ''. */
async function tornTailPrefix(handle: FileHandle): Promise<string> {
  const {size} = await handle.stat()
  if (size === 0) return ''
  const last = Buffer.alloc(1)
  await handle.read(last, 0, 1, size - 1)
  return last[0] === 0x0a ? '' : '\n'
}
