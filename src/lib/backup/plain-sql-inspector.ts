const HEADER = '-- PostgreSQL database dump'
const FOOTER = '-- PostgreSQL database dump complete'

export type PlainSqlReport = {
  /** The dump ends with pg_dump's "dump complete" line: it was not cut short. */
  complete: boolean
  /** The text starts like a pg_dump plain-SQL dump. */
  looksLikeDump: boolean
  /** schema.table of every CREATE TABLE in the dump. */
  tables: string[]
}

/**
 * Reads a plain-SQL pg_dump as it streams past (the embedded site's backups, made with
 * pglite-tools): checks its header and footer and collects the tables, keeping only a line's
 * worth of text in memory.
 */
export class PlainSqlInspector {
  #carry = ''
  #head = ''
  readonly #tables = new Set<string>()
  #tail = ''
  readonly #decoder = new TextDecoder('utf8')

  feed(chunk: Uint8Array): void {
    this.#consume(this.#decoder.decode(chunk, {stream: true}))
  }

  finish(): PlainSqlReport {
    this.#consume(this.#decoder.decode())
    this.#line(this.#carry)
    this.#carry = ''
    return {
      complete: this.#tail.includes(FOOTER),
      looksLikeDump: this.#head.trimStart().startsWith('--') && this.#head.includes(HEADER),
      tables: [...this.#tables].sort(),
    }
  }

  #consume(text: string): void {
    if (this.#head.length < 4096) this.#head += text.slice(0, 4096 - this.#head.length)
    this.#tail = (this.#tail + text).slice(-4096)
    const lines = (this.#carry + text).split('\n')
    this.#carry = lines.pop() ?? ''
    if (this.#carry.length > 65_536) this.#carry = this.#carry.slice(0, 65_536)
    for (const line of lines) this.#line(line)
  }

  #line(line: string): void {
    const match = /^CREATE (?:UNLOGGED )?TABLE (?:IF NOT EXISTS )?([^\s(]+) \($/.exec(line.trimEnd())
    if (match) this.#tables.add(match[1]!.replaceAll('"', ''))
  }
}
