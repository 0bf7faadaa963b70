import {EXIT_CODES, MigrateError} from '../errors.js'
import {writeCsvReport} from '../fs/csv-report.js'
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
  const sorted = [...rows].sort((a, b) => (a.user < b.user ? -1 : a.user > b.user ? 1 : 0))
  await writeCsvReport(
    path,
    [
      {header: 'user', value: (row: PasswordRow) => row.user},
      {header: 'email', value: (row: PasswordRow) => row.email},
      {header: 'file', value: (row: PasswordRow) => row.file},
      {header: 'password', value: (row: PasswordRow) => row.password.reveal()},
    ],
    sorted,
  )
}

function damaged(path: string, cause: unknown): MigrateError {
  return new MigrateError(`${path} is not a passwords.csv written by ckan-migrate bundle`, {
    cause,
    exitCode: EXIT_CODES.badInput,
    suggestion:
      'Move it away (it may hold passwords of bundles already sent), then run again: every bundle is rewritten.',
  })
}
