import pg from 'pg'

import {EXIT_CODES, MigrateError} from '../errors.js'
import {parseDatabaseUrl, toNodePostgresUrl} from './database-url.js'

export type Queryable = Pick<pg.ClientBase, 'query'>

/** The server's version as a number (server_version_num: 150004 for 15.4), for features that depend on it. */
export async function serverVersionNum(sql: Queryable): Promise<number> {
  const {rows} = await sql.query<{n: number}>(`SELECT current_setting('server_version_num')::int AS n`)
  return rows[0]!.n
}

export type CkanDatabaseOptions = {
  /** statement_timeout in milliseconds (0 = none). */
  statementTimeoutMs?: number
}

export type CkanDatabase = {
  client: pg.Client
  close(): Promise<void>
  /** True on PGlite (the embedded sandbox), where session settings are not applied (see openCkanDatabase). */
  embedded: boolean
  /** Redacted URL, for messages. */
  where: string
}

/**
 * Opens ONE connection to the CKAN database (the embedded PGlite server serves one client at a
 * time, and one connection is all any command needs). Connection failures become one-line
 * MigrateErrors that never show the password.
 */
export async function openCkanDatabase(url: string, options: CkanDatabaseOptions): Promise<CkanDatabase> {
  const parsed = parseDatabaseUrl(url)
  const client = new pg.Client({
    application_name: 'ckan-migrate',
    connectionString: toNodePostgresUrl(url),
    connectionTimeoutMillis: 15_000,
  })
  // A dropped connection later must not crash the process with an unhandled 'error' event.
  client.on('error', () => {})
  let embedded: boolean
  try {
    await client.connect()
    // The one PGlite rule: PGlite (the embedded sandbox) is ONE session shared by every client,
    // so a session setting made here would also bind the emulator's connections. Session
    // settings are for real servers only, and reads are kept read-only per transaction
    // (readOnlyTransaction), which works the same on both.
    const {rows} = await client.query<{version: string}>('SELECT version()')
    embedded = /PGlite/i.test(rows[0]?.version ?? '')
    if (!embedded && options.statementTimeoutMs !== undefined)
      await client.query(`SET statement_timeout = ${Math.max(0, Math.floor(options.statementTimeoutMs))}`)
  } catch (error) {
    await client.end().catch(() => {})
    const translated = translateDatabaseError(error, parsed.redacted)
    // Anything else PostgreSQL says while the session starts (a bad ?options=, a server that
    // refuses this client) is still "cannot use this database": its first line, not a crash.
    const sqlState = (error as {code?: unknown}).code
    if (translated === error && typeof sqlState === 'string' && /^[0-9A-Z]{5}$/.test(sqlState)) {
      throw new MigrateError(
        `Cannot reach the CKAN database at ${parsed.redacted}: PostgreSQL refused the session (${sqlState}: ${String((error as Error).message).split('\n')[0]})`,
        {
          cause: error,
          exitCode: EXIT_CODES.databaseUnreachable,
          suggestion: 'Check the connection parameters after ? in the database URL, and the server log.',
        },
      )
    }
    throw translated
  }
  return {
    client,
    async close() {
      await client.end().catch(() => {})
    },
    embedded,
    where: parsed.redacted,
  }
}

/**
 * The one way ckan-migrate reads without writing: `work` runs inside a READ ONLY transaction
 * (PostgreSQL itself refuses any write in it), rolled back at the end whatever happens. Per
 * transaction, never per session, because of the one PGlite rule (see openCkanDatabase).
 * `repeatableRead` gives every statement of `work` the same snapshot (the audit's counts agree).
 */
export async function readOnlyTransaction<T>(
  sql: Queryable,
  work: () => Promise<T>,
  options: {repeatableRead?: boolean} = {},
): Promise<T> {
  await sql.query(
    options.repeatableRead ? 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY' : 'BEGIN TRANSACTION READ ONLY',
  )
  try {
    return await work()
  } finally {
    await sql.query('ROLLBACK').catch(() => {})
  }
}

/** Runs `use` with an open database and always closes it. */
export async function withCkanDatabase<T>(
  url: string,
  options: CkanDatabaseOptions,
  use: (database: CkanDatabase) => Promise<T>,
): Promise<T> {
  const database = await openCkanDatabase(url, options)
  try {
    return await use(database)
  } catch (error) {
    throw error instanceof MigrateError ? error : translateDatabaseError(error, database.where)
  } finally {
    await database.close()
  }
}

/**
 * Turns a node-postgres or socket error into a one-line MigrateError. Other errors pass through.
 * `privilege`: what the work needs on the table PostgreSQL names in a permission error (e.g.
 * 'UPDATE' for purge-keys' SELECT … FOR UPDATE and UPDATE, which need UPDATE on "user");
 * default 'SELECT', all the reading commands need.
 */
export function translateDatabaseError(error: unknown, where: string, context: {privilege?: string} = {}): unknown {
  if (error instanceof MigrateError) return error
  const {code, message} = error as {code?: string; message?: string}
  const unreachable = (reason: string, suggestion: string) =>
    new MigrateError(`Cannot reach the CKAN database at ${where}: ${reason}`, {
      cause: error,
      exitCode: EXIT_CODES.databaseUnreachable,
      suggestion,
    })
  switch (code) {
    case '28000':
    case '28P01': {
      return unreachable(
        'PostgreSQL refused the login (wrong user or password)',
        'Check the user and password in --database-url (or sqlalchemy.url in ckan.ini).',
      )
    }
    case '3D000': {
      return unreachable('the database does not exist', 'Check the database name at the end of the URL.')
    }
    case '42P01': {
      return new MigrateError(`The database at ${where} is not a CKAN database: ${message ?? 'a table is missing'}`, {
        cause: error,
        exitCode: EXIT_CODES.notCkanDatabase,
        suggestion: "Point --database-url (or --ckan-ini) at the CKAN site's own database.",
      })
    }
    case '42501': {
      // insufficient_privilege: "permission denied for table user" (PostgreSQL 15+; "relation" before).
      const table = /permission denied for (?:table|relation) (\S+)/.exec(message ?? '')?.[1]
      const privilege = context.privilege ?? 'SELECT'
      if (!table)
        return new MigrateError(
          `The database user may not ${privilege === 'SELECT' ? 'read' : 'change'} CKAN's tables at ${where}: ${message ?? ''}`.trim(),
          {
            cause: error,
            exitCode: EXIT_CODES.databaseUnreachable,
            suggestion: `Connect as the CKAN database owner, or GRANT ${privilege} on the CKAN tables to this user.`,
          },
        )
      return new MigrateError(
        `The database user lacks the ${privilege} privilege on table "${table}" at ${where} (PostgreSQL: permission denied)`,
        {
          cause: error,
          exitCode: EXIT_CODES.databaseUnreachable,
          suggestion: `Connect as the CKAN database owner (sqlalchemy.url's user), or GRANT ${privilege} ON "${table}" TO this user.`,
        },
      )
    }
    case '25006': {
      // read_only_sql_transaction: a hot standby, or default_transaction_read_only for this user/database.
      return new MigrateError(
        `The database at ${where} accepts no writes: ${(message ?? 'read-only transaction').split('\n')[0]} (a hot standby, or default_transaction_read_only)`,
        {
          cause: error,
          exitCode: EXIT_CODES.databaseUnreachable,
          suggestion:
            'Connect to the primary server, not a standby; if it is the primary, turn default_transaction_read_only off for this user (ALTER ROLE … SET default_transaction_read_only = off).',
        },
      )
    }
    case '57014': {
      return unreachable(
        'a query took longer than the statement timeout',
        'Run it again when the database is less busy, or raise --statement-timeout.',
      )
    }
    case 'ENOENT': {
      // A socket folder (?host=/run/postgresql) without PostgreSQL's socket in it; any other
      // missing file is not the database's business.
      const {address, syscall} = error as {address?: unknown; syscall?: unknown}
      if (syscall !== 'connect') return error
      return unreachable(
        `no PostgreSQL socket${typeof address === 'string' && address ? ` at ${address}` : ''}`,
        'Check the socket folder (?host=…) and that PostgreSQL runs on this machine.',
      )
    }
    case 'EAI_AGAIN':
    case 'ECONNREFUSED':
    case 'ECONNRESET':
    case 'EHOSTUNREACH':
    case 'ENOTFOUND':
    case 'ETIMEDOUT': {
      return unreachable(
        code === 'ECONNREFUSED' ? 'connection refused' : (code ?? 'network error'),
        'Check the host and port, that PostgreSQL is running, and that this machine may connect to it.',
      )
    }
    default: {
      if (typeof message === 'string' && /timeout|terminated|Connection/i.test(message) && !code)
        return unreachable(
          message.split('\n')[0] ?? 'connection failed',
          'Check that PostgreSQL is running and reachable.',
        )
      return error
    }
  }
}
