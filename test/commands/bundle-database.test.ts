import {parse} from 'csv-parse/sync'
import {readFile} from 'node:fs/promises'
import {join} from 'node:path'
import pg from 'pg'
import {describe, expect, it} from 'vitest'

import {createCkanSchema} from '../../src/sandbox/ckan-schema.js'
import {HOSTILE_USERS, seedCkanSite} from '../../src/sandbox/ckan-site-seeder.js'
import {runCliJson} from '../helpers/run-cli.js'
import {createTestDatabase} from '../helpers/test-database.js'
import {makeCertificate, makeRun, pythonRead} from '../lib/bundle/bundle-fixtures.js'

describe('bundle --database-url', () => {
  it("fills passwords.csv's email column from the CKAN database, hostile names included", async () => {
    const database = await createTestDatabase()
    const client = new pg.Client({connectionString: database.url})
    await client.connect()
    await createCkanSchema(client, '2.9', {harvest: false})
    await seedCkanSite(client, {seed: 'bundle', siteId: 'default', users: 30, version: '2.9'})
    const {rows: users} = await client.query<{email: string | null; id: string; name: string}>(
      `SELECT id, name, email FROM "user" WHERE name = ANY($1::text[]) OR name = 'admin' ORDER BY name`,
      [HOSTILE_USERS.map((user) => user.name)],
    )
    await client.end()
    expect(users).toHaveLength(HOSTILE_USERS.length + 1)

    const fixture = await makeRun(users.map((user) => ({id: user.id, name: user.name})))
    const {certPath} = await makeCertificate('dcor.example.org')
    const {json} = await runCliJson<{bundleDir: string; emails: string}>([
      'bundle',
      '--out',
      fixture.path,
      '--server-cert',
      certPath,
      '--encryption',
      'zipcrypto',
      '--database-url',
      database.url,
    ])
    expect(json.status).toBe(0)
    expect(json.result!.emails).toBe('database')
    const rows = parse(await readFile(join(json.result!.bundleDir, 'passwords.csv')), {
      bom: true,
      columns: true,
    }) as Array<Record<string, string>>
    expect(rows).toHaveLength(users.length)
    const admin = rows.find((row) => row.user === 'admin')!
    expect(admin.email).toBe('admin@example.org')
    const traversal = rows.find((row) => row.user === '../../etc/passwd')!
    expect(traversal.email).toBe(users.find((user) => user.name === '../../etc/passwd')!.email)
    expect(traversal.file).not.toContain('/')
    const opened = await pythonRead(join(json.result!.bundleDir, traversal.file!), traversal.password!)
    expect(opened.apiKey).toBe(`${fixture.tokens.get('../../etc/passwd')!.token}\n`)
  })
})
