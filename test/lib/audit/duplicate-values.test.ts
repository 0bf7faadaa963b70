import pg from 'pg'
import {describe, expect, it} from 'vitest'

import {collectUserFindings} from '../../../src/lib/audit/database-findings.js'
import {createCkanSchema} from '../../../src/lib/sandbox/ckan-schema.js'
import {createTestDatabase} from '../../helpers/test-database.js'

/** Duplicates are grouped by a hash of each value: only equal values may ever count as shared. */
describe('duplicate keys and duplicate active emails', () => {
  it('counts exactly the users holding equal values, not values that differ by case, spaces or state', async () => {
    const database = await createTestDatabase()
    const client = new pg.Client({connectionString: database.url})
    await client.connect()
    try {
      await createCkanSchema(client, '2.9')
      const users: Array<[name: string, apikey: null | string, email: null | string, state: string]> = [
        ['key-twin-1', 'shared-key', 'a@example.org', 'active'],
        ['key-twin-2', 'shared-key', 'A@example.org', 'active'],
        ['key-upper', 'SHARED-KEY', 'b@example.org', 'active'],
        ['key-space', 'shared-key ', 'b@example.org', 'deleted'],
        ['key-empty-1', '', 'c@example.org', 'active'],
        ['key-empty-2', '', 'c@example.org', 'active'],
        ['key-null', null, '', 'active'],
        ['mail-empty', 'own-key', '', 'active'],
        ['mail-pending', 'other-key', 'a@example.org', 'pending'],
      ]
      for (const [name, apikey, email, state] of users) {
        await client.query(
          `INSERT INTO "user" (id, name, apikey, email, state, sysadmin) VALUES ($1, $1, $2, $3, $4, false)`,
          [name, apikey, email, state],
        )
      }
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY')
      const {findings} = await collectUserFindings(client, {
        checkDuplicateEmails: true,
        hasApiTokenTable: true,
        siteUserName: 'default',
      })
      await client.query('COMMIT')
      const keys = findings.find((finding) => finding.id === 'legacy-keys-duplicated')!
      expect(keys.count).toBe(2)
      expect([...keys.sample].sort()).toEqual(['key-twin-1', 'key-twin-2'])
      // c@example.org twice, and the empty address twice: CKAN 2.10's unique index refuses both pairs.
      const emails = findings.find((finding) => finding.id === 'duplicate-active-emails')!
      expect(emails.count).toBe(4)
      expect([...emails.sample].sort()).toEqual(['key-empty-1', 'key-empty-2', 'key-null', 'mail-empty'])
      expect(JSON.stringify(findings)).not.toMatch(/shared-key|own-key|other-key/i)
    } finally {
      await client.end()
    }
  })

  it('reports no duplicates (and samples nothing) on a site without any', async () => {
    const database = await createTestDatabase()
    const client = new pg.Client({connectionString: database.url})
    await client.connect()
    try {
      await createCkanSchema(client, '2.9')
      for (const name of ['one', 'two', 'three']) {
        await client.query(
          `INSERT INTO "user" (id, name, apikey, email, state, sysadmin) VALUES ($1, $1, $1 || '-key', $1 || '@example.org', 'active', false)`,
          [name],
        )
      }
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY')
      const {findings} = await collectUserFindings(client, {
        checkDuplicateEmails: true,
        hasApiTokenTable: true,
        siteUserName: 'default',
      })
      await client.query('COMMIT')
      expect(findings.map((finding) => finding.id)).not.toContain('legacy-keys-duplicated')
      expect(findings.map((finding) => finding.id)).not.toContain('duplicate-active-emails')
      expect(findings.find((finding) => finding.id === 'legacy-keys')?.count).toBe(3)
    } finally {
      await client.end()
    }
  })
})
