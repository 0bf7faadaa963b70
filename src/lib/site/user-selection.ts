import type {Queryable} from './ckan-database.js'
import {EXIT_CODES, MigrateError} from '../errors.js'
import {LIST_FILE_LIMIT, readFailure, readInputText} from '../fs/input-file.js'
import {Secret} from '../secret.js'

/**
 * Which users get a token, read from the CKAN database (read-only, one connection). Users are
 * read in keyset pages ordered by name, so a site with a million users never loads one giant
 * result set; only the compact selected rows are kept.
 */
export type CkanUserRow = {
  email: string | null
  hasLegacyKey: boolean
  id: string
  name: string
  state: string
  sysadmin: boolean
}

export type SkippedUser = {reason: string; user: CkanUserRow}

export type UserSelectionOptions = {
  includePending?: boolean
  includeSiteUser?: boolean
  /** At most this many selected users (after the other rules), in name order. */
  limit?: number
  /** Page size of the keyset reads (tests use small pages). */
  pageSize?: number
  /** The site user's name (ckan.site_id); it is left out unless includeSiteUser. */
  siteUserName?: string
  sysadminsOnly?: boolean
  /** Names or ids given with --users / --users-file: only these, each one reported. */
  users?: string[]
}

export type UserSelection = {
  /** Users who get a token, in name order. */
  selected: CkanUserRow[]
  /** Users who were named, or who hold a legacy key, but get no token, and why. */
  skipped: SkippedUser[]
}

type UserRecord = {
  apikey_present: boolean
  email: string | null
  id: string
  name: string
  state: string
  sysadmin: boolean
}

const COLUMNS = `id, name, email, state, coalesce(sysadmin, false) AS sysadmin, (apikey IS NOT NULL AND apikey <> '') AS apikey_present`

/** Users holding a legacy key, any state (deleted and pending ones are reported as skipped). */
const SELECT_KEY_HOLDERS_PAGE = `
  SELECT ${COLUMNS}
  FROM "user"
  WHERE apikey IS NOT NULL AND apikey <> '' AND name > $1
  ORDER BY name
  LIMIT $2`

const SELECT_NAMED_USERS = `
  SELECT ${COLUMNS}
  FROM "user"
  WHERE name = ANY($1::text[]) OR id = ANY($1::text[])
  ORDER BY name`

const SELECT_LEGACY_KEYS = `SELECT id, apikey FROM "user" WHERE id = ANY($1::text[]) AND apikey IS NOT NULL AND apikey <> ''`

const SELECT_SAMPLE = `
  SELECT id, name FROM "user"
  WHERE state = 'active'
  ORDER BY md5(id)
  LIMIT $1`

export const SKIP_REASONS = {
  deleted: 'deleted user: CKAN 2.10+ treats deleted users as anonymous, so a token would never work',
  notSysadmin: 'not a sysadmin (--sysadmins-only)',
  pending: 'pending user (pass --include-pending to give pending users tokens)',
  siteUser: 'the site user (pass --include-site-user; services get their own token from rewrite-config)',
} as const

/** One user of the selection: selected, or skipped with the reason. */
export type SelectionItem = {reason?: string; user: CkanUserRow}

/**
 * How many key holders the default selection goes through (sysadmins only with `sysadminsOnly`):
 * a lower bound on the lines a run writes, for a free-space check before it starts.
 */
export async function countKeyHolders(sql: Queryable, options: {sysadminsOnly?: boolean} = {}): Promise<number> {
  const {rows} = await sql.query<{count: number}>(
    `SELECT count(*)::int AS count FROM "user" WHERE apikey IS NOT NULL AND apikey <> ''${options.sysadminsOnly ? ' AND sysadmin' : ''}`,
  )
  return rows[0]?.count ?? 0
}

/** Selects the users of a run. Unknown names in `users` end in one badInput error. */
export async function selectUsers(sql: Queryable, options: UserSelectionOptions): Promise<UserSelection> {
  const selected: CkanUserRow[] = []
  const skipped: SkippedUser[] = []
  for await (const {reason, user} of streamUsers(sql, options)) {
    if (reason === undefined) selected.push(user)
    else skipped.push({reason, user})
  }
  return {selected, skipped}
}

/**
 * The selection one user at a time, in name order (named users: all read at once, they are on
 * the command line). Key holders are read in keyset pages, so memory stays flat however big the
 * site; nothing is kept once yielded. Unknown names in `users` end in one badInput error before
 * anything is yielded.
 */
export async function* streamUsers(sql: Queryable, options: UserSelectionOptions): AsyncGenerator<SelectionItem> {
  const limit = options.limit ?? Number.POSITIVE_INFINITY
  let selected = 0
  const classify = (user: CkanUserRow): string | undefined => {
    if (user.state === 'deleted') return SKIP_REASONS.deleted
    if (user.state !== 'active' && !(user.state === 'pending' && options.includePending)) {
      return user.state === 'pending' ? SKIP_REASONS.pending : `user in state "${user.state}"`
    }
    if (options.siteUserName && user.name === options.siteUserName && !options.includeSiteUser)
      return SKIP_REASONS.siteUser
    if (options.sysadminsOnly && !user.sysadmin) return SKIP_REASONS.notSysadmin
    return undefined
  }

  if (options.users) {
    const wanted = [...new Set(options.users.map((name) => name.trim()).filter(Boolean))]
    const {rows} = await sql.query<UserRecord>(SELECT_NAMED_USERS, [wanted])
    const found = new Set<string>()
    for (const row of rows) {
      found.add(row.name)
      found.add(row.id)
    }
    const unknown = wanted.filter((name) => !found.has(name))
    if (unknown.length > 0) {
      throw new MigrateError(
        `${unknown.length} user${unknown.length === 1 ? ' is' : 's are'} not in the CKAN database: ${describeUserNames(unknown)}`,
        {
          exitCode: EXIT_CODES.badInput,
          suggestion: 'Check the names in --users / --users-file (user names or ids, as in CKAN).',
        },
      )
    }
    for (const row of rows) {
      const user = toUser(row)
      const reason = classify(user)
      if (reason) yield {reason, user}
      else if (selected < limit) {
        selected += 1
        yield {user}
      }
    }
    return
  }

  const pageSize = options.pageSize ?? 2000
  let after = ''
  for (;;) {
    // One page at a time (keyset on the unique name): memory stays flat however big the site.
    const {rows} = await sql.query<UserRecord>(SELECT_KEY_HOLDERS_PAGE, [after, pageSize])
    for (const row of rows) {
      const user = toUser(row)
      const reason = classify(user)
      if (reason === SKIP_REASONS.notSysadmin) continue
      if (reason) yield {reason, user}
      else if (selected < limit) {
        selected += 1
        yield {user}
      }
    }
    if (rows.length < pageSize || selected >= limit) break
    after = rows.at(-1)!.name
  }
}

/** A few active users, spread over the table: the database-and-API-are-one-site check. */
export async function sampleUsers(sql: Queryable, count: number): Promise<Array<{id: string; name: string}>> {
  const {rows} = await sql.query<{id: string; name: string}>(SELECT_SAMPLE, [count])
  return rows
}

/** The legacy keys of these users, wrapped (verify --legacy reads them at verify time; never stored). */
export async function readLegacyKeys(sql: Queryable, userIds: string[]): Promise<Map<string, Secret>> {
  const keys = new Map<string, Secret>()
  for (let start = 0; start < userIds.length; start += 5000) {
    const {rows} = await sql.query<{apikey: string; id: string}>(SELECT_LEGACY_KEYS, [
      userIds.slice(start, start + 5000),
    ])
    for (const row of rows) keys.set(row.id, new Secret(row.apikey))
  }
  return keys
}

/**
 * Reads --users-file: one user name or id per line (commas also separate); blank lines and
 * lines starting with # are ignored.
 */
export async function readUsersFile(path: string): Promise<string[]> {
  let text: string
  try {
    text = await readInputText(path, {maxBytes: LIST_FILE_LIMIT})
  } catch (error) {
    throw new MigrateError(`Cannot read --users-file ${path}: it ${readFailure(error)}`, {
      exitCode: EXIT_CODES.badInput,
      suggestion: 'Pass a readable text file with one user name per line.',
    })
  }
  const names = text
    .split(/\r?\n/)
    .filter((line) => !line.trimStart().startsWith('#'))
    .flatMap((line) => line.split(','))
    .map((name) => name.trim())
    .filter(Boolean)
  checkUserNames(names, `--users-file ${path}`)
  if (names.length === 0) {
    throw new MigrateError(`--users-file ${path} names no user`, {
      exitCode: EXIT_CODES.badInput,
      suggestion: 'Put one user name per line (lines starting with # are comments).',
    })
  }
  return names
}

/** The most of one name an error message shows: a 100,000-character name is cut, its length said. */
const SHOWN_NAME_LENGTH = 80

/** A name as an error message shows it: quoted, cut to 80 characters with its length when longer. */
export function describeUserName(name: string): string {
  return name.length > SHOWN_NAME_LENGTH
    ? `${JSON.stringify(`${name.slice(0, SHOWN_NAME_LENGTH)}…`)} (${name.length} characters)`
    : JSON.stringify(name)
}

/** The first five names (each as describeUserName shows it), then how many more. */
export function describeUserNames(names: readonly string[]): string {
  const shown = names.slice(0, 5).map(describeUserName).join(', ')
  return names.length > 5 ? `${shown} and ${names.length - 5} more` : shown
}

/**
 * The names of --users as every command reads them (already split at commas): trimmed, each
 * once, no NUL (PostgreSQL's text cannot hold one). Other control characters pass: a database
 * may hold such a name (the sandbox seeds `tab\tname`), and naming it must select it. A list that names nobody (`--users ""`, `--users ,`) is refused:
 * selecting nobody without a word is never what was meant.
 */
export function namedUsers(values: readonly string[], source = '--users'): string[] {
  const names = [...new Set(values.map((name) => name.trim()).filter(Boolean))]
  if (names.length === 0) {
    throw new MigrateError(`${source} names no user`, {
      exitCode: EXIT_CODES.badInput,
      suggestion: `Pass CKAN user names or ids, comma-separated (${source} alice,bob), or leave ${source} out.`,
    })
  }
  checkUserNames(names, source, {nulOnly: true})
  return names
}

/**
 * User names and ids are text PostgreSQL can hold: a NUL or another control character (a binary
 * file passed by mistake) is refused here, naming where it came from, not sent to the database.
 */
export function checkUserNames(names: readonly string[], source: string, options: {nulOnly?: boolean} = {}): void {
  const bad = names.findIndex((name) =>
    // eslint-disable-next-line no-control-regex
    options.nulOnly ? name.includes('\u0000') : /[\u0000-\u001F\u007F]/.test(name),
  )
  if (bad !== -1) {
    throw new MigrateError(
      `${source} holds a control character in its name number ${bad + 1}: is it a text file of user names?`,
      {
        exitCode: EXIT_CODES.badInput,
        suggestion: 'Pass a text file with one CKAN user name or id per line.',
      },
    )
  }
}

function toUser(row: UserRecord): CkanUserRow {
  return {
    email: row.email,
    hasLegacyKey: row.apikey_present,
    id: row.id,
    name: row.name,
    state: row.state,
    sysadmin: row.sysadmin,
  }
}
