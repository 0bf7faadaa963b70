import {join} from 'node:path'

import {parseCsv} from '../bundle/passwords.js'
import {describeUserNames, namedUsers, SKIP_REASONS} from '../site/user-selection.js'
import {readSitePeople} from '../site/site-people.js'
import {EXIT_CODES, MigrateError} from '../errors.js'
import {LIST_FILE_LIMIT, readFailure, readInputText} from '../fs/input-file.js'
import {neutraliseCell} from '../fs/csv-report.js'
import type {RunToken} from '../run/run-folder.js'
import type {Secret} from '../secret.js'
import type {PasswordRow} from '../bundle/passwords-csv.js'

/** One person `deliver` may mail: their bundle, its password, and where each goes. */
export type Recipient = {
  bundlePath: string
  /** The bundle's address: "user".email from the CKAN database, else the email column of passwords.csv. */
  email: null | string
  file: string
  fullname: null | string
  password: Secret
  /** The second mail's address (--contacts column), when the admin gave one. */
  passwordTo: null | string
  userId: string
  userName: string
}

export type RecipientPlan = {
  recipients: Recipient[]
  skipped: Array<{email: null | string; reason: string; userId: string; userName: string}>
  /** Where the addresses came from. */
  source: 'database' | 'passwords.csv'
}

export const DELIVER_SKIP_REASONS = {
  deleted: SKIP_REASONS.deleted,
  duplicate: (others: string[]) =>
    `the email address is also the address of ${others.map((name) => JSON.stringify(name)).join(', ')}: nobody can tell whose bundle is whose`,
  invalid: 'the email address is not one a mail server accepts (user@domain)',
  noBundle: 'no bundle: passwords.csv has no row for this user (run bundle first)',
  noEmail: 'no email address (none in the CKAN database or passwords.csv)',
  notInDatabase: 'not in the CKAN database any more',
} as const

export type RecipientOptions = {
  bundleDir: string
  contacts?: {column: string; file: string}
  database?: {ckanIni?: string; databaseUrl?: string}
  passwords: Map<string, PasswordRow>
  tokens: Map<string, RunToken>
  users?: readonly string[]
}

/** A plain address: no display name, no white space, one @, a dot in the domain (or a bracketed literal). */
const ADDRESS = /^[^\s@<>(),;:"\\[\]]+@(?:[^\s@<>(),;:"\\[\]]+\.[^\s@<>(),;:"\\[\]]+|\[[\d.:a-f]+\])$/i

export function normaliseAddress(address: string): string {
  return address.trim().toLowerCase()
}

/**
 * Who gets what: the run's people (with a token) that `bundle` bundled, their addresses, and the
 * ones left out with the reason (no bundle, deleted, no or a shared email address).
 */
export async function planRecipients(options: RecipientOptions): Promise<RecipientPlan> {
  let names: string[]
  if (options.users && options.users.length > 0) {
    names = namedUsers(options.users)
    const unknown = names.filter((name) => !options.tokens.has(name))
    if (unknown.length > 0) {
      throw new MigrateError(
        `${unknown.length} user(s) given with --users have no token in this run: ${describeUserNames(unknown)}`,
        {
          exitCode: EXIT_CODES.badInput,
          suggestion: 'Check the names (CKAN user names, not display names).',
        },
      )
    }
  } else {
    names = [...options.tokens.keys()]
  }
  names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))

  const database = options.database?.databaseUrl || options.database?.ckanIni ? options.database : undefined
  const people = database
    ? await readSitePeople(
        database,
        names.map((name) => options.tokens.get(name)!.userId),
      )
    : undefined
  const passwordTo = options.contacts ? await readContacts(options.contacts) : undefined

  const skipped: RecipientPlan['skipped'] = []
  const candidates: Recipient[] = []
  for (const name of names) {
    const token = options.tokens.get(name)!
    const row = options.passwords.get(neutraliseCell(name))
    const person = people?.get(token.userId)
    const email = (people ? person?.email : row?.email)?.trim() || null
    const skip = (reason: string) => skipped.push({email, reason, userId: token.userId, userName: name})
    if (!row) skip(DELIVER_SKIP_REASONS.noBundle)
    else if (people && !person) skip(DELIVER_SKIP_REASONS.notInDatabase)
    else if (person?.state === 'deleted') skip(DELIVER_SKIP_REASONS.deleted)
    else if (!email) skip(DELIVER_SKIP_REASONS.noEmail)
    else if (!ADDRESS.test(email)) skip(DELIVER_SKIP_REASONS.invalid)
    else
      candidates.push({
        bundlePath: join(options.bundleDir, row.file),
        email,
        file: row.file,
        fullname: person?.fullname?.trim() || null,
        password: row.password,
        passwordTo: passwordTo?.get(name) ?? null,
        userId: token.userId,
        userName: name,
      })
  }

  // A shared address is skipped for every holder: mailing it one bundle per holder mixes them up.
  const holders = new Map<string, string[]>()
  for (const candidate of candidates) {
    const key = normaliseAddress(candidate.email!)
    holders.set(key, [...(holders.get(key) ?? []), candidate.userName])
  }
  const recipients: Recipient[] = []
  for (const candidate of candidates) {
    const shared = holders.get(normaliseAddress(candidate.email!))!
    if (shared.length > 1)
      skipped.push({
        email: candidate.email,
        reason: DELIVER_SKIP_REASONS.duplicate(shared.filter((name) => name !== candidate.userName)),
        userId: candidate.userId,
        userName: candidate.userName,
      })
    else recipients.push(candidate)
  }

  const same = recipients.filter(
    (recipient) =>
      recipient.passwordTo && normaliseAddress(recipient.passwordTo) === normaliseAddress(recipient.email!),
  )
  if (same.length > 0) {
    throw new MigrateError(
      `--contacts gives ${same.length} user(s) the bundle's own address for the password: ${describeUserNames(same.map((recipient) => recipient.userName))}`,
      {
        exitCode: EXIT_CODES.badInput,
        suggestion: `The password must travel by another channel: give a different address in column ${JSON.stringify(options.contacts!.column)}, or leave it empty (the password then goes only to the CSV).`,
      },
    )
  }
  const badSecond = recipients.filter((recipient) => recipient.passwordTo && !ADDRESS.test(recipient.passwordTo))
  if (badSecond.length > 0) {
    throw new MigrateError(
      `--contacts column ${JSON.stringify(options.contacts!.column)} holds an address a mail server would refuse for ${describeUserNames(badSecond.map((recipient) => recipient.userName))}`,
      {exitCode: EXIT_CODES.badInput, suggestion: 'Give a plain user@domain address, or leave the cell empty.'},
    )
  }
  return {recipients, skipped, source: database ? 'database' : 'passwords.csv'}
}

/** --contacts FILE: a CSV with a header row, a `user` column and the column named by --password-to. */
async function readContacts(contacts: NonNullable<RecipientOptions['contacts']>): Promise<Map<string, string>> {
  let text: string
  try {
    text = await readInputText(contacts.file, {maxBytes: LIST_FILE_LIMIT})
  } catch (error) {
    throw new MigrateError(`Cannot read --contacts ${contacts.file}: it ${readFailure(error)}`, {
      cause: error,
      exitCode: EXIT_CODES.badInput,
      suggestion: 'Pass a readable CSV file with a header row holding a user column.',
    })
  }
  let rows
  try {
    rows = parseCsv(text)
  } catch (error) {
    throw new MigrateError(`--contacts ${contacts.file}: ${(error as Error).message}`, {
      cause: error,
      exitCode: EXIT_CODES.badInput,
      suggestion: 'Close the quoted field, or remove the stray double quote.',
    })
  }
  const header = rows.shift()?.cells.map((cell) => cell.trim()) ?? []
  const userColumn = header.indexOf('user')
  const addressColumn = header.indexOf(contacts.column)
  if (userColumn === -1 || addressColumn === -1) {
    throw new MigrateError(
      `--contacts ${contacts.file} has no ${userColumn === -1 ? '"user"' : JSON.stringify(contacts.column)} column in its header row`,
      {
        exitCode: EXIT_CODES.badInput,
        suggestion: `Its first row must name the columns, e.g. user,${contacts.column}.`,
      },
    )
  }
  const addresses = new Map<string, string>()
  for (const {cells} of rows) {
    const user = cells[userColumn]?.trim() ?? ''
    const address = cells[addressColumn]?.trim() ?? ''
    if (user !== '' && address !== '') addresses.set(user, address)
  }
  return addresses
}
