import {EXIT_CODES, MigrateError} from '../errors.js'

export type ParsedDatabaseUrl = {
  database: string
  host: string
  port: number
  /** The URL with the password replaced by ***: safe for messages. */
  redacted: string
  user: string
  /** Set when the URL uses the postgres:// scheme, which CKAN 2.10+ (SQLAlchemy 1.4) rejects. */
  warning?: string
}

/**
 * Checks a PostgreSQL URL the way CKAN's sqlalchemy.url is written. Accepts postgresql://,
 * postgresql+psycopg2:// and postgres:// (with a warning), and never echoes the password.
 */
export function parseDatabaseUrl(url: string): ParsedDatabaseUrl {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch (error) {
    throw new MigrateError('The database URL is not a valid URL', {
      cause: error,
      exitCode: EXIT_CODES.badInput,
      suggestion: 'Use the form postgresql://USER:PASSWORD@HOST:PORT/DBNAME (the sqlalchemy.url of ckan.ini).',
    })
  }
  const scheme = parsed.protocol.replace(/:$/, '')
  if (!['postgres', 'postgresql', 'postgresql+psycopg2'].includes(scheme)) {
    throw new MigrateError(`The database URL scheme ${scheme}:// is not PostgreSQL`, {
      exitCode: EXIT_CODES.badInput,
      suggestion: 'CKAN only runs on PostgreSQL: use postgresql://USER:PASSWORD@HOST:PORT/DBNAME.',
    })
  }
  const redactedUrl = new URL(url)
  if (redactedUrl.password) redactedUrl.password = '***'
  return {
    database: decodeURIComponent(parsed.pathname.replace(/^\//, '')) || 'postgres',
    host: parsed.hostname || 'localhost',
    port: parsed.port ? Number(parsed.port) : 5432,
    redacted: redactedUrl.href,
    user: decodeURIComponent(parsed.username),
    ...(scheme === 'postgres'
      ? {
          warning:
            'The database URL uses postgres://, which CKAN 2.10+ rejects: write postgresql:// in ckan.ini before upgrading.',
        }
      : {}),
  }
}

/** The URL as node-postgres wants it (postgresql://, without a SQLAlchemy driver suffix). */
export function toNodePostgresUrl(url: string): string {
  return url.replace(/^postgres(ql)?(\+\w+)?:\/\//, 'postgresql://')
}
