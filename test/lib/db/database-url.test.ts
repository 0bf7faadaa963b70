import {parse} from 'pg-connection-string'
import {describe, expect, it} from 'vitest'

import {
  parseDatabaseUrl,
  sameDatabase,
  toLibpqConnection,
  toNodePostgresUrl,
} from '../../../src/lib/site/database-url.js'
import {EXIT_CODES, MigrateError} from '../../../src/lib/errors.js'

const SECRET = 'S3cretPw'

describe('database URLs, read as SQLAlchemy reads sqlalchemy.url', () => {
  it.each([
    // [URL, user, password, host, port, database]
    [`postgresql://ckan:${SECRET}@db.example.org/ckan_default`, 'ckan', SECRET, 'db.example.org', 5432, 'ckan_default'],
    [`postgresql://ckan:5432/${SECRET}@127.0.0.1:6543/ckan`, 'ckan', `5432/${SECRET}`, '127.0.0.1', 6543, 'ckan'],
    [`postgresql://ckan:1#${SECRET}?x:y@db/ckan`, 'ckan', `1#${SECRET}?x:y`, 'db', 5432, 'ckan'],
    [`postgresql://ckan:${SECRET}@pw@db/ckan`, 'ckan', `${SECRET}@pw`, 'db', 5432, 'ckan'],
    [`postgresql+psycopg2://ckan:${SECRET}%40x%2Fy@db/ck%61n`, 'ckan', `${SECRET}@x/y`, 'db', 5432, 'ckan'],
    [`postgresql://ckan:${SECRET}%zz@[::1]:5433/ckan`, 'ckan', `${SECRET}%zz`, '::1', 5433, 'ckan'],
    [`postgresql://u%zz:${SECRET}@db/x%`, 'u%zz', SECRET, 'db', 5432, 'x%'],
  ])('%s', (url, user, password, host, port, database) => {
    const parsed = parseDatabaseUrl(url)
    expect(parsed).toMatchObject({database, host, port, user})
    expect(parsed.redacted).not.toContain(SECRET)
    expect(parsed.redacted).toContain(':***@')
    // What node-postgres reads back from the URL we hand it.
    const config = parse(toNodePostgresUrl(url))
    expect(config).toMatchObject({database, password, user})
    expect(Number(config.port || 5432)).toBe(port)
    expect(config.host).toBe(host)
    // pg_dump gets no password in its argv.
    const libpq = toLibpqConnection(url)
    expect(libpq.password).toBe(password)
    expect(libpq.url).not.toContain(SECRET)
  })

  it('masks ?password= everywhere it shows and keeps it out of the pg_dump URL', () => {
    const url = `postgresql://u@127.0.0.1:1/x?sslmode=require&password=${SECRET}`
    expect(parseDatabaseUrl(url).redacted).toBe('postgresql://u@127.0.0.1:1/x?sslmode=require&password=***')
    expect(parse(toNodePostgresUrl(url)).password).toBe(SECRET)
    expect(toLibpqConnection(url)).toEqual({password: SECRET, url: 'postgresql://u@127.0.0.1:1/x?sslmode=require'})
    // libpq's sslpassword (the client key's passphrase) is a secret too.
    expect(parseDatabaseUrl(`postgresql://u@127.0.0.1:1/x?sslpassword=${SECRET}`).redacted).toBe(
      'postgresql://u@127.0.0.1:1/x?sslpassword=***',
    )
  })

  it('reads the socket form and gives sslmode its libpq meaning (require: encrypted, not verified)', () => {
    const socket = parse(toNodePostgresUrl(`postgresql://ckan:${SECRET}@/ckan?host=/run/postgresql`))
    expect(socket).toMatchObject({database: 'ckan', host: '/run/postgresql', password: SECRET, user: 'ckan'})
    const tls = parse(toNodePostgresUrl('postgresql://ckan@db/ckan?sslmode=require'))
    expect(tls.ssl).toMatchObject({rejectUnauthorized: false})
    const verified = parse(toNodePostgresUrl('postgresql://ckan@db/ckan?sslmode=verify-full'))
    expect(verified.ssl).not.toMatchObject({rejectUnauthorized: false})
  })

  it('refuses what is not a PostgreSQL URL with exit 7, without echoing it', () => {
    for (const url of [
      `ckan:${SECRET}@db/ckan`,
      `mysql://u:${SECRET}@db/ckan`,
      `postgresql://u:${SECRET}@db:99999/x`,
    ]) {
      let thrown: unknown
      try {
        parseDatabaseUrl(url)
      } catch (error) {
        thrown = error
      }
      expect(thrown, url).toBeInstanceOf(MigrateError)
      expect((thrown as MigrateError).exitCode).toBe(EXIT_CODES.badInput)
      expect((thrown as MigrateError).message).not.toContain(SECRET)
    }
  })

  it('tells the same database from another whatever the password or scheme', () => {
    expect(sameDatabase('postgresql://ckan:a@db/ckan', 'postgres://ckan:b@DB:5432/ckan')).toBe(true)
    expect(sameDatabase('postgresql://ckan:a@db/ckan', 'postgresql://ckan:a@db/xloader')).toBe(false)
  })
})
