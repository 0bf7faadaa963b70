import pg from 'pg'
import {describe, expect, it} from 'vitest'

import {collectUserFindings, scanUsers} from '../../../src/lib/audit/database-findings.js'
import {inspectCkanDatabase} from '../../../src/lib/site/ckan-version.js'
import {MigrateError} from '../../../src/lib/errors.js'
import {createCkanSchema} from '../../../src/sandbox/ckan-schema.js'
import {seedCkanSite} from '../../../src/sandbox/ckan-site-seeder.js'
import {fingerprintOf} from '../../../src/lib/secret.js'
import {createTestDatabase} from '../../helpers/test-database.js'

describe('scanUsers', () => {
  it('streams every user through the cursor in batches, with fingerprints instead of keys', async () => {
    const database = await createTestDatabase()
    const client = new pg.Client({connectionString: database.url})
    await client.connect()
    try {
      await createCkanSchema(client, '2.10')
      await seedCkanSite(client, {seed: 'scan', siteId: 'default', users: 53, version: '2.10'})
      const {rows: expected} = await client.query<{apikey: null | string; id: string}>('SELECT id, apikey FROM "user"')
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY')
      const shape = await inspectCkanDatabase(client, 'test')
      expect(shape).toMatchObject({hasApiTokenTable: true, hasHarvestSourceTable: false, version: '2.10'})
      const seen = new Map<string, string>()
      for await (const row of scanUsers(client, {batchSize: 7, hasApiTokenTable: true})) {
        expect(Object.values(row)).not.toContain(expected.find((user) => user.id === row.id)?.apikey)
        seen.set(row.id, row.keyFingerprint)
      }
      await client.query('COMMIT')
      expect(seen.size).toBe(53)
      for (const user of expected) expect(seen.get(user.id)).toBe(user.apikey ? fingerprintOf(user.apikey) : '')
    } finally {
      await client.end()
    }
  })

  it('tells UUID keys (any case) from keys that only look like one', async () => {
    const database = await createTestDatabase()
    const client = new pg.Client({connectionString: database.url})
    await client.connect()
    try {
      await createCkanSchema(client, '2.9')
      const keys = {
        'bad-dashes': 'aaaaaaa--aaaa-aaaa-aaaa-aaaaaaaaaaaa',
        'bad-hex': 'zzzzzzzz-zzzz-4zzz-azzz-zzzzzzzzzzzz',
        'bad-short': 'legacy-0123',
        'good-lower': '0f0e2c3a-1b2c-4d5e-8f90-0123456789ab',
        'good-upper': '0F0E2C3A-1B2C-4D5E-8F90-0123456789AB',
      }
      for (const [name, key] of Object.entries(keys)) {
        await client.query(
          `INSERT INTO "user" (id, name, apikey, state, sysadmin) VALUES ($1, $1, $2, 'active', false)`,
          [name, key],
        )
      }
      const {findings} = await collectUserFindings(client, {
        checkDuplicateEmails: true,
        hasApiTokenTable: true,
        siteUserName: 'default',
      })
      const notUuid = findings.find((finding) => finding.id === 'legacy-keys-not-uuid')!
      expect(notUuid.count).toBe(3)
      expect([...notUuid.sample].sort()).toEqual(['bad-dashes', 'bad-hex', 'bad-short'])
      expect(JSON.stringify(findings)).not.toMatch(/0f0e2c3a|zzzzzzzz/i)
    } finally {
      await client.end()
    }
  })

  it('refuses a database without a "user" table as not CKAN (exit 9)', async () => {
    const database = await createTestDatabase()
    const client = new pg.Client({connectionString: database.url})
    await client.connect()
    try {
      const error = await inspectCkanDatabase(client, 'postgresql://x@db/other').catch((error_: unknown) => error_)
      expect(error).toBeInstanceOf(MigrateError)
      expect(error).toMatchObject({exitCode: 9})
    } finally {
      await client.end()
    }
  })
})
