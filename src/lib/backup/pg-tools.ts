import {type ChildProcess, execFile, spawn} from 'node:child_process'
import {join} from 'node:path'
import type {Writable} from 'node:stream'
import {promisify} from 'node:util'

import {EXIT_CODES, MigrateError} from '../errors.js'

const execFileAsync = promisify(execFile)

export type PgTool = 'pg_dump' | 'pg_restore'

/** Where pg_dump and pg_restore are: a folder (`--pg-bin`), or undefined for the PATH. */
export function pgToolPath(tool: PgTool, binFolder?: string): string {
  return binFolder ? join(binFolder, tool) : tool
}

/**
 * The major version of pg_dump or pg_restore (`pg_dump (PostgreSQL) 15.18 …` → 15). A missing
 * program is a one-line `toolMissing` error.
 */
export async function pgToolMajorVersion(tool: PgTool, binFolder?: string): Promise<number> {
  const path = pgToolPath(tool, binFolder)
  let stdout: string
  try {
    ;({stdout} = await execFileAsync(path, ['--version'], {timeout: 30_000}))
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    throw new MigrateError(
      `${tool} was not found${binFolder ? ` in ${binFolder}` : ' on the PATH'}${code && code !== 'ENOENT' ? ` (${code})` : ''}`,
      {
        cause: error,
        exitCode: EXIT_CODES.toolMissing,
        suggestion: `Install the PostgreSQL client tools (e.g. apt-get install postgresql-client), or pass --pg-bin with the folder that holds ${tool}.`,
      },
    )
  }
  const match = /\(PostgreSQL\)\s+(\d+)/.exec(stdout) ?? /\b(\d+)(?:\.\d+)?/.exec(stdout)
  if (!match) {
    throw new MigrateError(
      `${path} does not look like PostgreSQL's ${tool} (it printed: ${stdout.trim().split('\n')[0]})`,
      {
        exitCode: EXIT_CODES.toolMissing,
        suggestion: `Pass --pg-bin with the folder of PostgreSQL's own ${tool}.`,
      },
    )
  }
  return Number(match[1])
}

/** pg_dump refuses servers newer than itself; say so before it starts, in one line. */
export function assertToolCanReadServer(tool: PgTool, toolMajor: number, serverMajor: number): void {
  if (toolMajor >= serverMajor) return
  throw new MigrateError(
    `${tool} ${toolMajor} cannot dump a PostgreSQL ${serverMajor} server (it must be ${serverMajor} or newer)`,
    {
      exitCode: EXIT_CODES.toolMissing,
      suggestion: `Install the PostgreSQL ${serverMajor} client tools (e.g. postgresql-client-${serverMajor}) and pass --pg-bin /usr/lib/postgresql/${serverMajor}/bin.`,
    },
  )
}

export type RunningTool = {
  child: ChildProcess
  /** Resolves with the exit code (or the signal name) and the first lines of stderr. */
  exited: Promise<{code: number | null; signal: NodeJS.Signals | null; stderr: string; stdout: string}>
}

/**
 * Starts a PostgreSQL tool with a clean, explicit environment: the password only through
 * PGPASSWORD (never argv), never a prompt.
 */
export function startPgTool(
  tool: PgTool,
  args: string[],
  options: {binFolder?: string; collectStdout?: boolean; password?: string},
): RunningTool {
  const env: NodeJS.ProcessEnv = {...process.env, PGCONNECT_TIMEOUT: '15'}
  delete env.PGPASSWORD
  if (options.password) env.PGPASSWORD = options.password
  const child = spawn(pgToolPath(tool, options.binFolder), args, {env, stdio: ['pipe', 'pipe', 'pipe']})
  return {child, exited: collectExit(child, options.collectStdout ?? false)}
}

/** Waits for a child to exit, keeping the first 8 KiB of stderr (and stdout when asked). */
export function collectExit(child: ChildProcess, collectStdout: boolean): RunningTool['exited'] {
  let stderr = ''
  let stdout = ''
  child.stderr?.setEncoding('utf8')
  child.stderr?.on('data', (text: string) => {
    if (stderr.length < 8192) stderr += text
  })
  if (collectStdout) {
    child.stdout?.setEncoding('utf8')
    child.stdout?.on('data', (text: string) => {
      stdout += text
    })
  }
  return new Promise((resolve, reject) => {
    child.once('error', reject)
    child.once('close', (code, signal) => resolve({code, signal, stderr, stdout}))
  })
}

/** The first meaningful line a PostgreSQL tool printed on stderr, without its "pg_dump: error:" prefix. */
export function firstErrorLine(stderr: string): string {
  const lines = stderr
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean)
  const line = lines.find((candidate) => /error|fatal/i.test(candidate)) ?? lines[0] ?? 'no message'
  return line.replace(/^pg_(dump|restore):\s*(error:\s*)?/, '')
}

/** A table as `pg_restore --list` names it. */
export type DumpTable = {name: string; schema: string; withData: boolean}

/**
 * Reads the tables out of `pg_restore --list` output: `215; 1259 16386 TABLE public user ckan`
 * lines declare them; `TABLE DATA` lines say their rows are in the dump too.
 */
export function parseRestoreList(listing: string): {entries: number; tables: DumpTable[]} {
  const tables = new Map<string, DumpTable>()
  let entries = 0
  for (const line of listing.split('\n')) {
    const match = /^\d+;\s+\d+\s+\d+\s+(TABLE DATA|TABLE)\s+(\S+)\s+(\S+)\s/.exec(line)
    if (/^\d+;/.test(line)) entries += 1
    if (!match) continue
    const [, kind, schema, name] = match as unknown as [string, string, string, string]
    const key = `${schema}.${name}`
    const table = tables.get(key) ?? {name, schema, withData: false}
    if (kind === 'TABLE DATA') table.withData = true
    tables.set(key, table)
  }
  return {
    entries,
    tables: [...tables.values()].sort((a, b) => `${a.schema}.${a.name}`.localeCompare(`${b.schema}.${b.name}`)),
  }
}

/**
 * Writes to a child's stdin as long as it reads; `pg_restore --list` stops reading after the
 * table of contents and exits, which is success, not an error. Waits for drain (backpressure)
 * but never for a reader that has gone.
 */
export class BestEffortSink {
  #open = true
  readonly #stdin: Writable

  constructor(stdin: Writable) {
    this.#stdin = stdin
    stdin.on('error', () => {
      this.#open = false
    })
    stdin.on('close', () => {
      this.#open = false
    })
  }

  end(): void {
    if (this.#open) this.#stdin.end()
  }

  async write(chunk: Uint8Array): Promise<void> {
    if (!this.#open || this.#stdin.destroyed) return
    if (this.#stdin.write(chunk)) return
    await new Promise<void>((resolve) => {
      const done = () => {
        this.#stdin.off('drain', done)
        this.#stdin.off('close', done)
        this.#stdin.off('error', done)
        resolve()
      }
      this.#stdin.on('drain', done)
      this.#stdin.on('close', done)
      this.#stdin.on('error', done)
    })
  }
}
