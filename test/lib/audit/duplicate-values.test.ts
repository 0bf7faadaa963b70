import pg from 'pg'
import {describe, expect, it} from 'vitest'

import {collectUserFindings} from '../../../src/lib/audit/database-findings.js'
import {countDuplicates, HASH_32, HASH_64, type ValueHash} from '../../../src/lib/audit/user-census.js'
import {seedCkanSite} from '../../../src/sandbox/ckan-site-seeder.js'
import {createCkanSchema} from '../../../src/sandbox/ckan-schema.js'
import {createTestDatabase} from '../../helpers/test-database.js'

/** Runs `test` against a fresh database holding CKAN 2.9's schema. */
async function onCkan29Database(test: (client: pg.Client) => Promise<void>): Promise<void> {
  const database = await createTestDatabase()
  const client = new pg.Client({connectionString: database.url})
  await client.connect()
  try {
    await createCkanSchema(client, '2.9')
    await test(client)
  } finally {
    await client.end()
  }
}

/** The audit's per-user findings, from one read-only snapshot as the audit takes them. */
async function auditUsers(client: pg.Client, valueHash?: ValueHash) {
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY')
  const found = await collectUserFindings(client, {
    checkDuplicateEmails: true,
    hasApiTokenTable: true,
    siteUserName: 'default',
    valueHash,
  })
  await client.query('COMMIT')
  return found
}

/** Duplicates are grouped by a hash of each value: only equal values may ever count as shared. */
describe('duplicate keys and duplicate active emails', () => {
  it('counts exactly the users holding equal values, not values that differ by case, spaces or state', async () => {
    await onCkan29Database(async (client) => {
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
      const {findings} = await auditUsers(client)
      const keys = findings.find((finding) => finding.id === 'legacy-keys-duplicated')!
      expect(keys.count).toBe(2)
      expect([...keys.sample].sort()).toEqual(['key-twin-1', 'key-twin-2'])
      // c@example.org twice, and the empty address twice: CKAN 2.10's unique index refuses both pairs.
      const emails = findings.find((finding) => finding.id === 'duplicate-active-emails')!
      expect(emails.count).toBe(4)
      expect([...emails.sample].sort()).toEqual(['key-empty-1', 'key-empty-2', 'key-null', 'mail-empty'])
      expect(JSON.stringify(findings)).not.toMatch(/shared-key|own-key|other-key/i)
    })
  })

  it('reports no duplicates (and samples nothing) on a site without any', async () => {
    await onCkan29Database(async (client) => {
      for (const name of ['one', 'two', 'three']) {
        await client.query(
          `INSERT INTO "user" (id, name, apikey, email, state, sysadmin) VALUES ($1, $1, $1 || '-key', $1 || '@example.org', 'active', false)`,
          [name],
        )
      }
      const {findings} = await auditUsers(client)
      expect(findings.map((finding) => finding.id)).not.toContain('legacy-keys-duplicated')
      expect(findings.map((finding) => finding.id)).not.toContain('duplicate-active-emails')
      expect(findings.find((finding) => finding.id === 'legacy-keys')?.count).toBe(3)
    })
  })

  it('never counts two different values that share a hash (a collision): each shared hash is checked by value', async () => {
    await onCkan29Database(async (client) => {
      const users: Array<[name: string, apikey: string, email: string]> = [
        ['twin-1', 'twin-key', 'one@example.org'],
        ['twin-2', 'twin-key', 'two@example.org'],
        ['alone', 'alone-key', 'alone@example.org'],
      ]
      for (const [name, apikey, email] of users) {
        await client.query(
          `INSERT INTO "user" (id, name, apikey, email, state, sysadmin) VALUES ($1, $1, $2, $3, 'active', false)`,
          [name, apikey, email],
        )
      }
      // What a census reports when unequal values collide: the hashes of values only one user holds
      // (as if another value had the same hash), next to a hash that really is shared.
      const hash = async (value: string) =>
        (await client.query<{h: string}>('SELECT hashtextextended($1, 0)::text AS h', [value])).rows[0]!.h
      const duplicates = await countDuplicates(
        client,
        {
          emails: [await hash('alone@example.org'), await hash('one@example.org')],
          keys: [await hash('alone-key'), await hash('twin-key')],
        },
        HASH_64,
      )
      expect(duplicates.keys.count).toBe(2)
      expect([...duplicates.keys.sample].sort()).toEqual(['twin-1', 'twin-2'])
      expect(duplicates.emails).toEqual({count: 0, sample: []})
    })
  })

  it('finds the same duplicates whatever the hash: 32-bit (PostgreSQL 10) or one that makes most values collide', async () => {
    await onCkan29Database(async (client) => {
      await seedCkanSite(client, {seed: 'hashes', siteId: 'default', users: 3000, version: '2.9'})
      const {rows} = await client.query<{emails: number; keys: number}>(`
        SELECT (SELECT count(*) FROM "user" WHERE apikey <> '' AND apikey IN
                  (SELECT apikey FROM "user" WHERE apikey <> '' GROUP BY apikey HAVING count(*) > 1))::int AS keys,
               (SELECT count(*) FROM "user" WHERE state = 'active' AND email IN
                  (SELECT email FROM "user" WHERE state = 'active' GROUP BY email HAVING count(*) > 1))::int AS emails`)
      const truth = rows[0]!
      expect(truth.keys).toBeGreaterThan(0)
      expect(truth.emails).toBeGreaterThan(0)
      const eightBuckets: ValueHash = (column) => `(hashtext(u.${column}) & 7)::bigint`
      const expected = (await auditUsers(client)).findings
      for (const valueHash of [HASH_32, eightBuckets]) {
        const {findings} = await auditUsers(client, valueHash)
        const byId = (id: string) => findings.find((finding) => finding.id === id)
        expect(byId('legacy-keys-duplicated')?.count).toBe(truth.keys)
        expect(byId('duplicate-active-emails')?.count).toBe(truth.emails)
        expect(findings.map((finding) => [finding.id, finding.count])).toEqual(
          expected.map((finding) => [finding.id, finding.count]),
        )
      }
    })
  })

  it('counts users in a state CKAN does not use under that state, and samples token holders', async () => {
    await onCkan29Database(async (client) => {
      const users: Array<[name: string, apikey: null | string, state: string, tokens: Array<null | string>]> = [
        ['held', 'held-key', 'active', [null, '2026-01-02 03:04:05']],
        ['used', null, 'active', ['2026-01-02 03:04:05']],
        ['odd-1', 'odd-key', 'blocked', [null]],
        ['odd-2', null, 'blocked', []],
        ['plain', 'plain-key', 'pending', []],
      ]
      for (const [name, apikey, state, tokens] of users) {
        await client.query(
          `INSERT INTO "user" (id, name, apikey, email, state, sysadmin) VALUES ($1, $1, $2, $1 || '@example.org', $3, false)`,
          [name, apikey, state],
        )
        for (const [index, lastAccess] of tokens.entries()) {
          await client.query('INSERT INTO api_token (id, name, user_id, last_access) VALUES ($1, $1, $2, $3)', [
            `${name}-token-${index}`,
            name,
            lastAccess,
          ])
        }
      }
      const {findings, summary} = await auditUsers(client)
      expect(summary.users).toEqual({active: 2, blocked: 2, deleted: 0, pending: 1, sysadmins: 0, total: 5})
      expect(summary.legacyKeys).toEqual({active: 1, blocked: 1, deleted: 0, pending: 1, total: 3})
      expect(summary.apiTokens).toEqual({neverUsed: 2, total: 4, users: 3})
      const sample = (id: string) => [...findings.find((finding) => finding.id === id)!.sample].sort()
      expect(sample('api-tokens')).toEqual(['held', 'odd-1', 'used'])
      expect(sample('api-tokens-never-used')).toEqual(['held', 'odd-1'])
      expect(sample('legacy-key-holders-with-tokens')).toEqual(['held', 'odd-1'])
    })
  })
})
