import {randomInt} from 'node:crypto'
import {stat} from 'node:fs/promises'

import {EXIT_CODES, MigrateError} from '../errors.js'
import {LIST_FILE_LIMIT, readFailure, readInputText} from '../fs/input-file.js'
import {Secret} from '../secret.js'

/**
 * Bundle passwords. Generated ones come from the CSPRNG (`crypto.randomInt`, uniform), 24
 * characters from a 57-character alphabet without look-alikes (no 0/O, 1/l/I): 24 × log2(57) ≈ 140
 * bits, shown in groups of four (`Kp7w-…`) so they can be read out over the phone. The dashes are
 * part of the password.
 */
export const PASSWORD_ALPHABET = '23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'
export const PASSWORD_CHARACTERS = 24
export const PASSWORD_BITS = Math.floor(PASSWORD_CHARACTERS * Math.log2(PASSWORD_ALPHABET.length))
/** Shortest password accepted from --password-file. */
export const MIN_SUPPLIED_PASSWORD_LENGTH = 12

export function generatePassword(): Secret {
  let text = ''
  for (let index = 0; index < PASSWORD_CHARACTERS; index += 1) {
    if (index > 0 && index % 4 === 0) text += '-'
    text += PASSWORD_ALPHABET[randomInt(PASSWORD_ALPHABET.length)]
  }
  return new Secret(text)
}

/**
 * Splits CSV text (RFC 4180: quoted fields, doubled quotes, CRLF or LF, an optional UTF-8 BOM)
 * into rows with their 1-based line numbers. Blank lines are skipped.
 */
export function parseCsv(text: string): Array<{cells: string[]; line: number}> {
  const rows: Array<{cells: string[]; line: number}> = []
  let cells: string[] = []
  let cell = ''
  let quoted = false
  let line = 1
  let rowLine = 1
  let index = text.codePointAt(0) === 0xfe_ff ? 1 : 0
  const endRow = () => {
    cells.push(cell)
    if (cells.length > 1 || cells[0] !== '') rows.push({cells, line: rowLine})
    cells = []
    cell = ''
  }
  for (; index < text.length; index += 1) {
    const char = text[index]!
    if (quoted) {
      if (char === '"' && text[index + 1] === '"') {
        cell += '"'
        index += 1
      } else if (char === '"') {
        quoted = false
      } else {
        if (char === '\n') line += 1
        cell += char
      }
    } else if (char === '"' && cell === '') {
      quoted = true
    } else if (char === ',') {
      cells.push(cell)
      cell = ''
    } else if (char === '\n' || char === '\r') {
      if (char === '\r' && text[index + 1] === '\n') index += 1
      endRow()
      line += 1
      rowLine = line
    } else {
      cell += char
    }
  }
  if (quoted) throw new SyntaxError(`unterminated quoted field starting on line ${rowLine}`)
  if (cell !== '' || cells.length > 0) endRow()
  return rows
}

export type SuppliedPasswords = {
  passwords: Map<string, Secret>
  /** Set when the file can be read by group or others. */
  warning?: string
}

/**
 * Reads `--password-file`: `user,password` lines (CSV; a first line `user,password` is a header).
 * Refuses empty, short or duplicate entries, passwords with control characters, and passwords
 * starting with = + - @ (spreadsheets run those as formulas, and passwords.csv would then have to
 * alter them). Errors name line numbers, never a password.
 */
export async function readPasswordFile(path: string): Promise<SuppliedPasswords> {
  let text: string
  let warning: string | undefined
  try {
    text = await readInputText(path, {maxBytes: LIST_FILE_LIMIT})
    const info = await stat(path)
    if ((info.mode & 0o077) !== 0)
      warning = `${path} can be read by other users (mode ${(info.mode & 0o777).toString(8)}); chmod 600 it.`
  } catch (error) {
    throw new MigrateError(`Cannot read the password file ${path}: it ${readFailure(error)}`, {
      cause: error,
      exitCode: EXIT_CODES.badInput,
      suggestion: 'Pass --password-file with a readable CSV file of user,password lines.',
    })
  }
  return {passwords: parsePasswordFile(text, path), ...(warning ? {warning} : {})}
}

export function parsePasswordFile(text: string, path: string): Map<string, Secret> {
  const bad = (line: number, what: string) =>
    new MigrateError(`${path} line ${line}: ${what}`, {
      exitCode: EXIT_CODES.badInput,
      suggestion: `Each line must be user,password (quote a password holding a comma); passwords need at least ${MIN_SUPPLIED_PASSWORD_LENGTH} characters.`,
    })
  let rows: ReturnType<typeof parseCsv>
  try {
    rows = parseCsv(text)
  } catch (error) {
    throw new MigrateError(`${path}: ${(error as Error).message}`, {
      cause: error,
      exitCode: EXIT_CODES.badInput,
      suggestion: 'Close the quoted field, or remove the stray double quote.',
    })
  }
  const first = rows[0]
  if (first && first.cells[0]?.trim().toLowerCase() === 'user' && first.cells[1]?.trim().toLowerCase() === 'password')
    rows.shift()
  const passwords = new Map<string, Secret>()
  for (const {cells, line} of rows) {
    if (cells.length !== 2) throw bad(line, `expected 2 fields (user,password), found ${cells.length}`)
    const user = cells[0]!.trim()
    const password = cells[1]!.trim()
    if (user === '') throw bad(line, 'the user name is empty')
    if (passwords.has(user)) throw bad(line, `user ${JSON.stringify(user)} is listed twice`)
    if (password.length < MIN_SUPPLIED_PASSWORD_LENGTH)
      throw bad(line, `the password is shorter than ${MIN_SUPPLIED_PASSWORD_LENGTH} characters`)
    // eslint-disable-next-line no-control-regex
    if (/[\u0000-\u001F\u007F]/.test(password))
      throw bad(line, 'the password holds a control character (tab, line break, …)')
    if (/^[=+\-@]/.test(password))
      throw bad(line, 'the password starts with = + - or @, which spreadsheets run as a formula')
    passwords.set(user, new Secret(password))
  }
  if (passwords.size === 0) {
    throw new MigrateError(`${path} holds no passwords`, {
      exitCode: EXIT_CODES.badInput,
      suggestion: 'Write one user,password line per user to bundle.',
    })
  }
  return passwords
}
