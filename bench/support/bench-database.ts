import {randomBytes} from 'node:crypto'
import pg from 'pg'

import {startEmbeddedPostgres} from '../../src/sandbox/embedded-postgres.js'

export type BenchDatabase = {engine: 'pglite' | 'postgres'; release(): Promise<void>; url: string}

/** A fresh database on CKAN_MIGRATE_TEST_POSTGRES_URL's server, or a PGlite instance. */
export async function benchDatabase(): Promise<BenchDatabase> {
  const server = process.env.CKAN_MIGRATE_TEST_POSTGRES_URL
  if (!server) {
    const embedded = await startEmbeddedPostgres()
    return {engine: 'pglite', release: () => embedded.stop(), url: embedded.url}
  }
  const name = `ckan_bench_${randomBytes(5).toString('hex')}`
  const admin = new pg.Client({connectionString: server})
  await admin.connect()
  await admin.query(`CREATE DATABASE ${name}`)
  await admin.end()
  const url = new URL(server)
  url.pathname = `/${name}`
  return {
    engine: 'postgres',
    async release() {
      const client = new pg.Client({connectionString: server})
      await client.connect()
      await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
      await client.end()
    },
    url: url.href,
  }
}
