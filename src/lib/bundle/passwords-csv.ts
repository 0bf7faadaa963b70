import {EXIT_CODES, MigrateError} from '../errors.js'
import {neutraliseCell} from '../fs/csv-report.js'
import {writeDurably} from '../fs/durable-file.js'
import {LIST_FILE_LIMIT, readFailure, readInputText} from '../fs/input-file.js'
import type {RunToken} from '../run/run-folder.js'
import {fingerprintOf, Secret} from '../secret.js'
import {parseCsv} from './passwords.js'

/**
 * The bundles' passwords file and who the bundles are for, read by bundle, deliver, adoption,
 * rotate and report alike.
 */
export const PASSWORDS_FILE = 'passwords.csv'

export type PasswordRow = {email: string; file: string; password: Secret; user: string}

/** The newest token of each person (source issue-tokens), leaving out tokens `revoke` revoked. */
export async function peopleTokens(
  journal: Promise<Array<{jtiFingerprint?: string; kind: string}>>,
  tokens: RunToken[],
) {
  const revoked = new Set(
    (await journal).filter((entry) => entry.kind === 'token-revoked').map((entry) => entry.jtiFingerprint),
  )
  const newest = new Map<string, RunToken>()
  for (const token of tokens) {
    // revokedAt comes from the run's private revoked.jsonl (full jti); the journal's fingerprints cover older runs.
    if (
      token.source !== 'issue-tokens' ||
      token.revokedAt !== undefined ||
      revoked.has(fingerprintOf(token.jti.reveal()))
    )
      continue
    const known = newest.get(token.userName)
    if (!known || known.createdAt <= token.createdAt) newest.set(token.userName, token)
  }
  return newest
}

/** passwords.csv of an earlier run, keyed by the user cell as written (formula-neutralised). */
export async function readPasswordsCsv(path: string): Promise<Map<string, PasswordRow>> {
  let text: string
  try {
    text = await readInputText(path, {maxBytes: LIST_FILE_LIMIT})
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return new Map()
    throw new MigrateError(`Cannot read ${path}: it ${readFailure(error)}`, {
      cause: error,
      exitCode: EXIT_CODES.badInput,
      suggestion: 'Run as the user who wrote the bundles.',
    })
  }
  let rows
  try {
    rows = parseCsv(text)
  } catch (error) {
    throw damaged(path, error)
  }
  const header = rows.shift()
  if (header?.cells.join(',') !== 'user,email,file,password') throw damaged(path, undefined)
  const result = new Map<string, PasswordRow>()
  for (const {cells} of rows) {
    const [user = '', email = '', file = '', password = ''] = cells
    result.set(user, {email, file, password: new Secret(password), user})
  }
  return result
}

/**
 * Replaces passwords.csv (0600, atomically and durably: see writeDurably) with these rows, sorted
 * by user. Rows read back are already formula-neutralised, and neutralising is idempotent, so they
 * survive unchanged.
 */
export async function writePasswordsCsv(path: string, rows: Iterable<PasswordRow>): Promise<void> {
  const sheet = new PasswordsSheet()
  for (const row of rows) sheet.set(neutraliseCell(row.user), row)
  await sheet.write(path)
}

const HEADER_LINE = 'user,email,file,password\n'

/** One CSV cell as csv-stringify writes it (RFC 4180 quoting), neutralised first. */
function csvCell(value: string): string {
  const text = neutraliseCell(value)
  return /[",\n\r]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text
}

type SheetEntry = {line: string; row: PasswordRow}

const byUser = (a: SheetEntry, b: SheetEntry) => (a.row.user < b.row.user ? -1 : a.row.user > b.row.user ? 1 : 0)

/**
 * The rows of passwords.csv, each kept encoded as its CSV line and in user order, so that a commit
 * of a batch rewrites the file without encoding and sorting every row again: `bundle` rewrites it
 * once per batch (StagedBundles), and at 36,000 people that is dozens of full rewrites. The file is
 * what writeCsvReport would write: a BOM, the header, neutralised cells, rows sorted by user.
 */
export class PasswordsSheet {
  /** By the user cell as written (formula-neutralised). */
  readonly #entries = new Map<string, SheetEntry>()
  /** Entries in user order; those in #unsorted are missing (new, or their user changed). */
  #sorted: SheetEntry[] = []
  readonly #unsorted = new Map<string, SheetEntry>()

  get size(): number {
    return this.#entries.size
  }

  /** Adds or replaces the row of the user cell `key` (the row's user, neutralised). */
  set(key: string, row: PasswordRow): void {
    const entry = {
      line: `${csvCell(row.user)},${csvCell(row.email)},${csvCell(row.file)},${csvCell(row.password.reveal())}\n`,
      row,
    }
    const old = this.#entries.get(key)
    this.#entries.set(key, entry)
    if (old && old.row.user === row.user && !this.#unsorted.has(key)) {
      // Same place in the order: swap the entry in place.
      const index = this.#indexOf(old)
      if (index !== -1) {
        this.#sorted[index] = entry
        return
      }
    }
    this.#unsorted.set(key, entry)
  }

  /** Replaces `path` (0600, atomically and durably: see writeDurably) with the rows, sorted by user. */
  async write(path: string): Promise<void> {
    this.#merge()
    const text = `\uFEFF${HEADER_LINE}${this.#sorted.map((entry) => entry.line).join('')}`
    await writeDurably(path, text, {mode: 0o600})
  }

  /** Binary search of an entry in #sorted (by user, then by identity among equal users). */
  #indexOf(entry: SheetEntry): number {
    let low = 0
    let high = this.#sorted.length
    while (low < high) {
      const middle = (low + high) >>> 1
      if (byUser(this.#sorted[middle]!, entry) < 0) low = middle + 1
      else high = middle
    }
    for (let index = low; index < this.#sorted.length && byUser(this.#sorted[index]!, entry) === 0; index += 1)
      if (this.#sorted[index] === entry) return index
    return -1
  }

  /** Sorts the new entries and merges them into #sorted (stable: new after old among equal users). */
  #merge(): void {
    if (this.#unsorted.size === 0) return
    const current = new Set(this.#entries.values())
    const kept = this.#sorted.filter((entry) => current.has(entry))
    const added = [...this.#unsorted.values()].filter((entry) => current.has(entry)).sort(byUser)
    this.#unsorted.clear()
    const merged: SheetEntry[] = []
    let a = 0
    let b = 0
    while (a < kept.length && b < added.length) merged.push(byUser(added[b]!, kept[a]!) < 0 ? added[b++]! : kept[a++]!)
    while (a < kept.length) merged.push(kept[a++]!)
    while (b < added.length) merged.push(added[b++]!)
    this.#sorted = merged
  }
}

function damaged(path: string, cause: unknown): MigrateError {
  return new MigrateError(`${path} is not a passwords.csv written by ckan-migrate bundle`, {
    cause,
    exitCode: EXIT_CODES.badInput,
    suggestion:
      'Move it away (it may hold passwords of bundles already sent), then run again: every bundle is rewritten.',
  })
}
