import {type FileHandle, open, readFile} from 'node:fs/promises'

/**
 * An append-only JSON Lines file. Each append is one write of whole lines followed by fsync,
 * so a record counts as stored only once it is on disk. Appends made while a write is in flight
 * are grouped into the next write (one fsync for many records), which keeps throughput high
 * under concurrency without weakening the guarantee: append() resolves after its fsync.
 */
export class JsonlFile<T> {
  readonly mode: number
  readonly path: string
  #flushing: Promise<void> | undefined
  /** Whether the file's tail was checked for a torn line (a crash mid-write) by this instance. */
  #tailChecked = false
  #pending: Array<{line: string; reject: (error: unknown) => void; resolve: () => void}> = []

  constructor(path: string, mode = 0o600) {
    this.path = path
    this.mode = mode
  }

  /** Appends records and resolves once they are fsync'd. */
  async append(...records: T[]): Promise<void> {
    const line = records.map((record) => `${JSON.stringify(record)}\n`).join('')
    const done = new Promise<void>((resolve, reject) => this.#pending.push({line, reject, resolve}))
    if (!this.#flushing) this.#flushing = this.#flush()
    return done
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
      if (line.trim() === '') continue
      try {
        records.push(JSON.parse(line) as T)
      } catch {
        // torn write: ignored (see above)
      }
    }
    return records
  }

  async #flush(): Promise<void> {
    while (this.#pending.length > 0) {
      const batch = this.#pending
      this.#pending = []
      try {
         
        const handle = await open(this.path, this.#tailChecked ? 'a' : 'a+', this.mode)
        try {
          // A torn last line (kill -9 mid-write) must not swallow the next record: end it first.
          const prefix = this.#tailChecked ? '' : await tornTailPrefix(handle)
          this.#tailChecked = true
           
          await handle.appendFile(prefix + batch.map((entry) => entry.line).join(''))
           
          await handle.sync()
        } finally {
           
          await handle.close()
        }
        for (const entry of batch) entry.resolve()
      } catch (error) {
        for (const entry of batch) entry.reject(error)
      }
    }
    this.#flushing = undefined
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
