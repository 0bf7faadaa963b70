import pg from 'pg'
import {describe, expect, it} from 'vitest'

import {createCkanSchema} from '../../../src/sandbox/ckan-schema.js'
import {type CkanVersion} from '../../../src/lib/site/ckan-version.js'
import {
  describeSeededSite,
  HOSTILE_USERS,
  SEEDED_UPGRADE_TO_29,
  seedCkanSite,
} from '../../../src/sandbox/ckan-site-seeder.js'
import {createTestDatabase} from '../../helpers/test-database.js'

async function seededSite(version: CkanVersion, seed: string, users: number) {
  const database = await createTestDatabase()
  const client = new pg.Client({connectionString: database.url})
  await client.connect()
  await createCkanSchema(client, version, {harvest: true})
  await seedCkanSite(client, {harvestSources: true, seed, siteId: 'default', users, version})
  return client
}

const SNAPSHOT = `SELECT id, name, apikey, state, sysadmin, email, fullname FROM "user" ORDER BY id`

describe('seedCkanSite', () => {
  it('gives the same site for the same seed and another site for another seed', async () => {
    const first = await seededSite('2.9', 'alpha', 300)
    const second = await seededSite('2.9', 'alpha', 300)
    const third = await seededSite('2.9', 'beta', 300)
    const [a, b, c] = await Promise.all(
      [first, second, third].map(async (client) => (await client.query(SNAPSHOT)).rows),
    )
    expect(a).toEqual(b)
    expect(a).not.toEqual(c)
    await Promise.all([first, second, third].map((client) => client.end()))
  })

  it('seeds the realistic mix a migration meets on a 2.9 site', async () => {
    const client = await seededSite('2.9', 'mix', 5000)
    const {rows} = await client.query(`
      SELECT count(*)::int AS total,
             count(*) FILTER (WHERE apikey IS NOT NULL)::int AS with_key,
             count(*) FILTER (WHERE state = 'pending')::int AS pending,
             count(*) FILTER (WHERE state = 'deleted')::int AS deleted,
             count(*) FILTER (WHERE sysadmin)::int AS sysadmins,
             count(*) FILTER (WHERE email IS NULL)::int AS without_email,
             count(*) FILTER (WHERE apikey !~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$')::int AS non_uuid_keys,
             count(*) FILTER (WHERE length(fullname) >= 300)::int AS long_names
      FROM "user"`)
    const stats = rows[0]
    expect(stats.total).toBe(5000)
    expect(stats.with_key / stats.total).toBeGreaterThan(0.35)
    expect(stats.with_key / stats.total).toBeLessThan(0.45)
    for (const key of ['pending', 'deleted', 'sysadmins', 'without_email', 'non_uuid_keys', 'long_names']) {
      expect(stats[key], key).toBeGreaterThan(0)
    }
    const duplicates = await client.query(
      `SELECT email FROM "user" WHERE state = 'active' AND email IS NOT NULL GROUP BY email HAVING count(*) > 1`,
    )
    expect(duplicates.rowCount).toBeGreaterThan(0)
    const duplicateKeys = await client.query(
      `SELECT apikey FROM "user" WHERE apikey IS NOT NULL GROUP BY apikey HAVING count(*) > 1`,
    )
    expect(duplicateKeys.rowCount).toBeGreaterThan(0)
    const site = await client.query(
      `SELECT sysadmin, apikey IS NOT NULL AS has_key, email FROM "user" WHERE name = 'default'`,
    )
    expect(site.rows).toEqual([{email: null, has_key: true, sysadmin: true}])
    const hostile = await client.query(`SELECT name FROM "user" WHERE name = ANY($1)`, [
      HOSTILE_USERS.map((user) => user.name),
    ])
    expect(hostile.rowCount).toBe(HOSTILE_USERS.length)
    const tokens = await client.query(`SELECT count(*)::int AS n, count(last_access)::int AS used FROM api_token`)
    expect(tokens.rows[0].n).toBeGreaterThan(0)
    expect(tokens.rows[0].used).toBeLessThan(tokens.rows[0].n)
    const harvest = await client.query(`SELECT count(*)::int AS n FROM harvest_source WHERE config LIKE '%api_key%'`)
    expect(harvest.rows[0].n).toBeGreaterThan(0)
    await client.end()
  })

  it('never seeds duplicate active emails on 2.10, whose unique index forbids them', async () => {
    const client = await seededSite('2.10', 'mix', 3000)
    const {rows} = await client.query(`SELECT count(*)::int AS n FROM "user"`)
    expect(rows[0].n).toBe(3000)
    await client.end()
  })

  it('models a site from CKAN <= 2.8 on 2.9.11: only users from before the move hold keys, unless create_default_api_keys', async () => {
    const history = `
      SELECT (count(*) FILTER (WHERE created >= $1::timestamp AND apikey IS NOT NULL))::int AS new_with_key,
             (count(*) FILTER (WHERE created >= $1::timestamp))::int AS new_users,
             (count(*) FILTER (WHERE created < $1::timestamp AND apikey IS NULL))::int AS old_without_key,
             (count(*) FILTER (WHERE created < $1::timestamp AND apikey IS NOT NULL))::int AS old_with_key
      FROM "user"`
    for (const version of ['2.9', '2.11'] as const) {
      const database = await createTestDatabase()
      const client = new pg.Client({connectionString: database.url})
      await client.connect()
      await createCkanSchema(client, version)
      const seeded = await seedCkanSite(client, {seed: 'history', siteId: 'default', users: 800, version})
      const {rows} = await client.query(history, [SEEDED_UPGRADE_TO_29])
      // 2.8 gave every user a key; 2.9 gives a new user none (set_api_key, default false).
      expect(rows[0]).toMatchObject({new_with_key: 0, old_without_key: 0})
      expect(rows[0].new_users).toBeGreaterThan(300)
      expect(seeded.history).toEqual({
        createdOn29: rows[0].new_users,
        createdOn29WithKey: 0,
        keyHoldersFrom28: rows[0].old_with_key,
      })
      expect(describeSeededSite(version, seeded)).toBe(
        `a site that ran CKAN <= 2.8 until 2021-03-01, then 2.9.11${version === '2.9' ? '' : ' and later upgraded to 2.11.5'}: ${rows[0].old_with_key} users from before then (the site user included) hold legacy keys, ${rows[0].new_users} created since hold none (ckan.auth.create_default_api_keys = false, CKAN's default)`,
      )
      await client.end()
    }
    const database = await createTestDatabase()
    const client = new pg.Client({connectionString: database.url})
    await client.connect()
    await createCkanSchema(client, '2.9')
    const withSetting = await seedCkanSite(client, {
      createDefaultApiKeys: true,
      seed: 'history',
      siteId: 'default',
      users: 800,
      version: '2.9',
    })
    const {rows} = await client.query(history, [SEEDED_UPGRADE_TO_29])
    expect(rows[0].new_with_key).toBe(rows[0].new_users)
    expect(withSetting.history.createdOn29WithKey).toBe(rows[0].new_users)
    expect(describeSeededSite('2.9', withSetting, true)).toContain(
      `${rows[0].new_users} created since, ${rows[0].new_users} of them with a key (ckan.auth.create_default_api_keys = true)`,
    )
    await client.end()
  })
})
