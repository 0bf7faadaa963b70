import {EXIT_CODES, MigrateError} from '../errors.js'

export type ParsedDatabaseUrl = {
  database: string
  /** Host name or address; '' when the URL names none (a socket folder may come from ?host=). */
  host: string
  port: number
  /** The query parameters (libpq connection parameters), decoded, in order. */
  query: Array<[string, string]>
  /** The URL with every password (user info, ?password= and ?sslpassword=) replaced by ***: safe for messages. */
  redacted: string
  user: string
  /** Set when the URL uses the postgres:// scheme, which CKAN 2.10+ (SQLAlchemy 1.4) rejects. */
  warning?: string
}

/** What parseDatabaseUrl keeps to itself: the password, for the connection only. */
type Components = ParsedDatabaseUrl & {
  /** The database as written ('' when the URL names none: libpq then uses the user's name). */
  databaseGiven: string
  explicitPort: boolean
  hostPort: string
  password: string | undefined
  scheme: string
}

const INVALID = () =>
  new MigrateError('The database URL is not a valid URL', {
    exitCode: EXIT_CODES.badInput,
    suggestion: 'Use the form postgresql://USER:PASSWORD@HOST:PORT/DBNAME (the sqlalchemy.url of ckan.ini).',
  })

/**
 * Reads a URL the way SQLAlchemy reads CKAN's sqlalchemy.url (not as a WHATWG URL): the scheme,
 * then USER[:PASSWORD]@ up to the last "@", so a password may hold "/", "?", "#" or ":"; then
 * HOST[:PORT] (or [IPv6]), /DBNAME and ?QUERY (libpq parameters such as host=/run/postgresql,
 * sslmode or password). Escapes are decoded as Python's unquote does: a "%" that starts no valid
 * escape stays as it is.
 */
function splitDatabaseUrl(url: string): Components {
  const schemeMatch = /^([\w+]+):\/\/(.*)$/s.exec(url.trim())
  if (!schemeMatch) throw INVALID()
  const scheme = schemeMatch[1]!.toLowerCase()
  let rest = schemeMatch[2]!
  let user = ''
  let password: string | undefined
  const at = rest.lastIndexOf('@')
  if (at !== -1) {
    const userInfo = rest.slice(0, at)
    rest = rest.slice(at + 1)
    const colon = userInfo.indexOf(':')
    user = unquote(colon === -1 ? userInfo : userInfo.slice(0, colon))
    if (colon !== -1) password = unquote(userInfo.slice(colon + 1))
  }
  const queryAt = rest.indexOf('?')
  const beforeQuery = queryAt === -1 ? rest : rest.slice(0, queryAt)
  const query = queryAt === -1 ? [] : parseQuery(rest.slice(queryAt + 1))
  const slash = beforeQuery.indexOf('/')
  const hostPort = slash === -1 ? beforeQuery : beforeQuery.slice(0, slash)
  const database = slash === -1 ? '' : unquote(beforeQuery.slice(slash + 1))
  const hostMatch = /^(?:\[([^\]]+)\]|([^:[\]]*))(?::(\d*))?$/.exec(hostPort)
  if (!hostMatch) throw INVALID()
  const host = hostMatch[1] ?? hostMatch[2] ?? ''
  const port = hostMatch[3] ? Number(hostMatch[3]) : 5432
  if (!Number.isInteger(port) || port < 1 || port > 65_535) throw INVALID()
  const queryPassword = query.findLast(([name]) => name === 'password')?.[1]
  return {
    database: database || 'postgres',
    databaseGiven: database,
    explicitPort: Boolean(hostMatch[3]),
    host,
    hostPort,
    password: queryPassword ?? password,
    port,
    query,
    redacted: redactedForm(scheme, user, password !== undefined, hostPort, database, query),
    scheme,
    user,
  }
}

/**
 * Checks a PostgreSQL URL the way CKAN's sqlalchemy.url is written. Accepts postgresql://,
 * postgresql+psycopg2:// and postgres:// (with a warning), and never echoes a password.
 */
/** Query parameters that hold a secret: libpq's password and sslpassword (the client key's passphrase). */
const SECRET_QUERY_PARAMETER = /^(ssl)?password$/i

export function parseDatabaseUrl(url: string): ParsedDatabaseUrl {
  const {
    databaseGiven: _databaseGiven,
    explicitPort: _explicitPort,
    hostPort: _hostPort,
    password: _password,
    scheme,
    ...parsed
  } = splitDatabaseUrl(url)
  if (!['postgres', 'postgresql', 'postgresql+psycopg2'].includes(scheme)) {
    throw new MigrateError(`The database URL scheme ${scheme}:// is not PostgreSQL`, {
      exitCode: EXIT_CODES.badInput,
      suggestion: 'CKAN only runs on PostgreSQL: use postgresql://USER:PASSWORD@HOST:PORT/DBNAME.',
    })
  }
  return {
    ...parsed,
    ...(scheme === 'postgres'
      ? {
          warning:
            'The database URL uses postgres://, which CKAN 2.10+ rejects: write postgresql:// in ckan.ini before upgrading.',
        }
      : {}),
  }
}

/**
 * The URL as node-postgres wants it: postgresql://, every part percent-encoded again (so a password
 * holding "/" or "#" survives its WHATWG parser), and libpq's meaning of sslmode (require =
 * encrypted, certificate not checked), which is what CKAN gets from psycopg2 for the same URL.
 */
export function toNodePostgresUrl(url: string): string {
  const parts = splitDatabaseUrl(url)
  const query = parts.query.filter(([name]) => name !== 'uselibpqcompat')
  return libpqUrl(parts, {password: parts.password, query: [...query, ['uselibpqcompat', 'true']]})
}

/**
 * For libpq's own tools (pg_dump): the URL without any password (pass the password in PGPASSWORD,
 * never in argv, where ps shows it), and the password apart.
 */
export function toLibpqConnection(url: string): {password: string | undefined; url: string} {
  const parts = splitDatabaseUrl(url)
  return {
    password: parts.password,
    url: libpqUrl(parts, {password: undefined, query: parts.query.filter(([name]) => name !== 'password')}),
  }
}

/** The same database? Compared on what identifies it (host, port, database, user, socket folder). */
export function sameDatabase(a: string, b: string): boolean {
  const key = (url: string) => {
    const parts = splitDatabaseUrl(url)
    const socket = parts.query.findLast(([name]) => name === 'host')?.[1] ?? ''
    return JSON.stringify([parts.host.toLowerCase() || 'localhost', parts.port, parts.database, parts.user, socket])
  }
  return key(a) === key(b)
}

function libpqUrl(parts: Components, options: {password: string | undefined; query: Array<[string, string]>}): string {
  const userInfo =
    parts.user || options.password !== undefined
      ? `${encode(parts.user)}${options.password === undefined ? '' : `:${encode(options.password)}`}@`
      : ''
  const host = parts.host.includes(':') ? `[${parts.host}]` : encode(parts.host)
  const port = parts.explicitPort ? `:${parts.port}` : ''
  const query = options.query.map(([name, value]) => `${encode(name)}=${encode(value)}`).join('&')
  return `postgresql://${userInfo}${host}${port}/${encode(parts.databaseGiven)}${query ? `?${query}` : ''}`
}

function redactedForm(
  scheme: string,
  user: string,
  hasPassword: boolean,
  hostPort: string,
  database: string,
  query: Array<[string, string]>,
): string {
  const userInfo = user || hasPassword ? `${encode(user)}${hasPassword ? ':***' : ''}@` : ''
  const shownQuery = query
    .map(([name, value]) => `${encode(name)}=${SECRET_QUERY_PARAMETER.test(name) ? '***' : encode(value)}`)
    .join('&')
  return `${scheme}://${userInfo}${hostPort}/${encode(database)}${shownQuery ? `?${shownQuery}` : ''}`
}

/** Python's urllib.parse.unquote: valid %XX escapes decoded (as UTF-8), anything else kept. */
function unquote(text: string): string {
  return text.replaceAll(/(?:%[0-9A-Fa-f]{2})+/g, (run) => {
    const bytes = Uint8Array.from(run.slice(1).split('%'), (hex) => Number.parseInt(hex, 16))
    return new TextDecoder().decode(bytes)
  })
}

function parseQuery(text: string): Array<[string, string]> {
  return text
    .split('&')
    .filter(Boolean)
    .map((pair) => {
      const equals = pair.indexOf('=')
      const name = equals === -1 ? pair : pair.slice(0, equals)
      const value = equals === -1 ? '' : pair.slice(equals + 1)
      return [unquote(name.replaceAll('+', ' ')), unquote(value.replaceAll('+', ' '))]
    })
}

function encode(text: string): string {
  return encodeURIComponent(text)
}
