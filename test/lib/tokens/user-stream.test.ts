import pg from 'pg'
import {describe, expect, it, onTestFinished} from 'vitest'

import {SKIP_REASONS, streamUsers} from '../../../src/lib/site/user-selection.js'
import {createCkanSchema} from '../../../src/sandbox/ckan-schema.js'
import {seedCkanSite} from '../../../src/sandbox/ckan-site-seeder.js'
import {createTestDatabase} from '../../helpers/test-database.js'

describe('streamUsers', () => {
  it('streams the selection page by page in name order: every key holder once, skipped ones with a reason, --limit respected', async () => {
    const database = await createTestDatabase()
    const client = new pg.Client({connectionString: database.url})
    await client.connect()
    onTestFinished(() => client.end())
    await createCkanSchema(client, '2.9', {harvest: false})
    const {siteUserName} = await seedCkanSite(client, {seed: 'stream', siteId: 'default', users: 60, version: '2.9'})
    const {rows} = await client.query<{id: string; name: string; state: string}>(
      `SELECT id, name, state FROM "user" WHERE apikey IS NOT NULL AND apikey <> '' ORDER BY name`,
    )
    const expected = rows.filter((row) => row.state === 'active' && row.name !== siteUserName)

    // Pages of 7 rows: many keyset pages for 60 users.
    const items = []
    for await (const item of streamUsers(client, {pageSize: 7, siteUserName})) items.push(item)
    expect(items.map((item) => item.user.id)).toEqual(rows.map((row) => row.id))
    expect(items.filter((item) => item.reason === undefined).map((item) => item.user.id)).toEqual(
      expected.map((row) => row.id),
    )
    expect(items.find((item) => item.user.name === siteUserName)?.reason).toBe(SKIP_REASONS.siteUser)
    expect(
      items.filter((item) => item.user.state === 'deleted').every((item) => item.reason === SKIP_REASONS.deleted),
    ).toBe(true)

    const limited = []
    for await (const item of streamUsers(client, {limit: 5, pageSize: 3, siteUserName}))
      if (item.reason === undefined) limited.push(item.user.id)
    expect(limited).toEqual(expected.slice(0, 5).map((row) => row.id))
  })
})
