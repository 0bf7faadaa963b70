import {randomBytes} from 'node:crypto'
import pg from 'pg'
import {onTestFinished} from 'vitest'

import {startEmbeddedPostgres} from '../../src/sandbox/embedded-postgres.js'

/**
 * The URL of a real PostgreSQL server's maintenance database, given by .ci/run (always) or by a
 * developer. Without it, tests fall back to PGlite, the embedded engine.
 */
export const REAL_POSTGRES_URL = process.env.CKAN_MIGRATE_TEST_POSTGRES_URL

export type TestDatabase = {
  /** 'postgres' for a real server, 'pglite' for the embedded engine. */
  engine: 'pglite' | 'postgres'
  /** Drops the database (or stops PGlite). Called automatically when the test (or hook) finishes. */
  release(): Promise<void>
  url: string
}

/**
 * A fresh, empty database for one test: a new database on the real server when one is given,
 * otherwise a new PGlite instance behind its socket. Pass `{autoRelease: false}` from beforeAll
 * and release it yourself in afterAll.
 */
export async function createTestDatabase(options: {autoRelease?: boolean} = {}): Promise<TestDatabase> {
  let database: TestDatabase
  if (REAL_POSTGRES_URL) {
    const name = `ckan_test_${randomBytes(6).toString('hex')}`
    const admin = new pg.Client({connectionString: REAL_POSTGRES_URL})
    await admin.connect()
    await admin.query(`CREATE DATABASE ${name}`)
    await admin.end()
    const url = new URL(REAL_POSTGRES_URL)
    url.pathname = `/${name}`
    database = {
      engine: 'postgres',
      async release() {
        const client = new pg.Client({connectionString: REAL_POSTGRES_URL})
        await client.connect()
        await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
        await client.end()
      },
      url: url.href,
    }
  } else {
    const embedded = await startEmbeddedPostgres()
    database = {engine: 'pglite', release: () => embedded.stop(), url: embedded.url}
  }
  if (options.autoRelease !== false) onTestFinished(() => database.release())
  return database
}
