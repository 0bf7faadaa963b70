import {existsSync} from 'node:fs'
import {readFile} from 'node:fs/promises'
import pg from 'pg'
import {describe, expect, it} from 'vitest'

import {createCkanSchema} from '../src/sandbox/ckan-schema.js'
import {ALEMBIC_HEADS, CKAN_VERSIONS, type CkanVersion} from '../src/lib/site/ckan-version.js'
import {createTestDatabase} from './helpers/test-database.js'
import {SKIP_NOTES} from './helpers/requirements.js'

const REFERENCE = new URL('../../shared/ckan-reference/', import.meta.url)
const REFERENCE_FILES: Record<CkanVersion, string> = {
  '2.10': 'schema-ckan210.sql',
  '2.11': 'schema-ckan211.sql',
  '2.9': 'schema-ckan29.sql',
}
const TABLES = ['user', 'api_token', 'alembic_version', 'system_info']

/** What the catalog says about our tables: columns (type, default, nullability), constraints, indexes. */
async function describeTables(client: pg.Client) {
  const columns = await client.query(
    `SELECT table_name, column_name, data_type, character_maximum_length, column_default, is_nullable, ordinal_position
     FROM information_schema.columns WHERE table_schema = 'public' AND table_name = ANY($1) ORDER BY 1, ordinal_position`,
    [TABLES],
  )
  const constraints = await client.query(
    `SELECT conrelid::regclass::text AS table_name, conname, pg_get_constraintdef(oid) AS definition
     FROM pg_constraint WHERE connamespace = 'public'::regnamespace AND conrelid::regclass::text = ANY($1) ORDER BY 1, 2`,
    [TABLES.map((table) => (table === 'user' ? '"user"' : table))],
  )
  const indexes = await client.query(
    `SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = ANY($1) ORDER BY 1, 2`,
    [TABLES],
  )
  return {columns: columns.rows, constraints: constraints.rows, indexes: indexes.rows}
}

async function loadInto(sql: string) {
  const database = await createTestDatabase()
  const client = new pg.Client({connectionString: database.url})
  await client.connect()
  try {
    await client.query(sql)
    await client.query('SET search_path = public')
    return await describeTables(client)
  } finally {
    await client.end()
  }
}

describe.each(CKAN_VERSIONS)('CKAN %s schema fixture', (version) => {
  const referencePath = new URL(REFERENCE_FILES[version], REFERENCE)

  it('matches the reference pg_dump in columns, types, defaults, constraints and indexes', async (context) => {
    if (!existsSync(referencePath)) context.skip(SKIP_NOTES.referenceSchemas)
    // psql meta-commands (\\restrict) are not SQL; everything else is loaded as pg_dump wrote it.
    const dump = (await readFile(referencePath, 'utf8')).replaceAll(/^\\.*$/gm, '')
    const reference = await loadInto(dump)
    const database = await createTestDatabase()
    const client = new pg.Client({connectionString: database.url})
    await client.connect()
    try {
      await createCkanSchema(client, version, {harvest: true})
      expect(await describeTables(client)).toEqual(reference)
      const head = await client.query('SELECT version_num FROM alembic_version')
      expect(head.rows).toEqual([{version_num: ALEMBIC_HEADS[version]}])
    } finally {
      await client.end()
    }
  })
})

describe('version differences the fixtures must keep', () => {
  it('has user.last_active and the unique active-email index from 2.10 on, not in 2.9', async () => {
    const checks: Record<string, {hasIndex: boolean; hasLastActive: boolean}> = {}
    for (const version of CKAN_VERSIONS) {
      const database = await createTestDatabase()
      const client = new pg.Client({connectionString: database.url})
      await client.connect()
      await createCkanSchema(client, version)
      const lastActive = await client.query(
        `SELECT 1 FROM information_schema.columns WHERE table_name = 'user' AND column_name = 'last_active'`,
      )
      const index = await client.query(`SELECT 1 FROM pg_indexes WHERE indexname = 'idx_only_one_active_email'`)
      checks[version] = {hasIndex: index.rowCount === 1, hasLastActive: lastActive.rowCount === 1}
      await client.end()
    }
    expect(checks).toEqual({
      '2.10': {hasIndex: true, hasLastActive: true},
      '2.11': {hasIndex: true, hasLastActive: true},
      '2.9': {hasIndex: false, hasLastActive: false},
    })
  })
})
