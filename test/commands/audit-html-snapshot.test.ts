import {randomBytes} from 'node:crypto'
import {join} from 'node:path'
import pg from 'pg'
import {describe, expect, it} from 'vitest'

import {breakdownBeside, collectBreakdown, exportAuditSnapshot} from '../../src/lib/audit/readiness-breakdown.js'
import {EXIT_CODES} from '../../src/lib/errors.js'
import {openCkanDatabase} from '../../src/lib/site/ckan-database.js'
import {createCkanSchema} from '../../src/sandbox/ckan-schema.js'
import {seedCkanSite} from '../../src/sandbox/ckan-site-seeder.js'
import type {AuditResult} from '../../src/lib/workflows/audit.js'
import {runCliJson} from '../helpers/run-cli.js'
import {querySite, tempDir} from '../helpers/site-commands.js'
import {createTestDatabase, REAL_POSTGRES_URL} from '../helpers/test-database.js'

async function seededSite(users: number) {
  const database = await createTestDatabase()
  const client = new pg.Client({connectionString: database.url})
  await client.connect()
  await createCkanSchema(client, '2.9')
  await seedCkanSite(client, {seed: 'snapshot', siteId: 'default', users, version: '2.9'})
  await client.end()
  return database
}

const OPTIONS = {env: {}, hasApiTokenTable: true, plugins: [], siteUserName: 'default', version: '2.9' as const}

/**
 * On a PostgreSQL server, audit --html reads the page's figures on a second connection in the
 * audit transaction's exported snapshot, beside the census (PGlite, one session, reads them
 * after it on the same connection: the other tests cover that path).
 */
describe.runIf(REAL_POSTGRES_URL)('audit --html on a server: the figures beside the census', () => {
  it("reads the audit's instant: a user who signs up after the snapshot is not in the page's figures", async () => {
    const database = await seededSite(60)
    const audit = await openCkanDatabase(database.url, {})
    try {
      await audit.client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY')
      const snapshot = (await exportAuditSnapshot(audit.client))!
      expect(snapshot).toMatch(/\S/)
      // Committed after the audit's snapshot was taken.
      await querySite(
        {databaseUrl: database.url},
        `INSERT INTO "user" (id, name, apikey, created, password, email, sysadmin, state)
         VALUES ('late', 'late-comer', 'c0ffee00-1b2c-4d5e-8f90-0123456789ab', now(), 'x', 'late@example.org', false, 'active')`,
      )
      const beside = await breakdownBeside(
        snapshot,
        () => openCkanDatabase(database.url, {}),
        async () => {},
        OPTIONS,
      )
      const inAudit = await collectBreakdown(audit.client, OPTIONS)
      await audit.client.query('ROLLBACK')
      const now = await collectBreakdown(audit.client, OPTIONS)
      expect(beside).toBeDefined()
      expect(beside!.credentials).toEqual(inAudit.credentials)
      expect(beside!.keyHolderActivity).toEqual(inAudit.keyHolderActivity)
      expect(now.credentials.people.keyOnly).toBe(inAudit.credentials.people.keyOnly + 1)
    } finally {
      await audit.close()
    }
  })

  it('still writes the page, with the same figures, as a role that may not export a snapshot', async () => {
    const database = await seededSite(80)
    const role = `audit_${randomBytes(4).toString('hex')}`
    await querySite({databaseUrl: database.url}, `CREATE ROLE ${role} LOGIN`)
    try {
      await querySite({databaseUrl: database.url}, `GRANT SELECT ON ALL TABLES IN SCHEMA public TO ${role}`)
      // In this database only (pg_proc is per database): the function refuses everyone but superusers.
      await querySite({databaseUrl: database.url}, 'REVOKE EXECUTE ON FUNCTION pg_export_snapshot() FROM PUBLIC')
      const url = new URL(database.url)
      url.username = role
      await expect(
        querySite({databaseUrl: url.href}, 'BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT pg_export_snapshot()'),
      ).rejects.toThrow(/permission denied/)
      const dir = await tempDir()
      const asRole = await runCliJson<AuditResult>([
        'audit',
        '--database-url',
        url.href,
        '--html',
        join(dir, 'role.html'),
      ])
      const asOwner = await runCliJson<AuditResult>([
        'audit',
        '--database-url',
        database.url,
        '--html',
        join(dir, 'owner.html'),
      ])
      expect(asRole.exitCode, asRole.stdout + asRole.stderr).toBe(EXIT_CODES.blockersFound)
      expect(asOwner.exitCode).toBe(EXIT_CODES.blockersFound)
      const byRole = asRole.json.result!
      const owner = asOwner.json.result!
      expect(byRole.html?.bytes).toBeGreaterThan(0)
      expect(byRole.breakdown!.credentials).toEqual(owner.breakdown!.credentials)
      expect(byRole.breakdown!.tokenExpiry).toEqual(owner.breakdown!.tokenExpiry)
      expect(byRole.summary).toEqual(owner.summary)
    } finally {
      await database.release()
      await querySite({databaseUrl: REAL_POSTGRES_URL!}, `DROP ROLE IF EXISTS ${role}`)
    }
  })
})
