import {parse} from 'csv-parse/sync'
import {mkdtemp, readFile, readdir, rm, stat} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import pg from 'pg'
import {describe, expect, it, onTestFinished} from 'vitest'

import {writeUserCsv} from '../../../src/lib/audit/user-csv.js'
import {createCkanSchema} from '../../../src/sandbox/ckan-schema.js'
import {HOSTILE_USERS, seedCkanSite} from '../../../src/sandbox/ckan-site-seeder.js'
import {fingerprintOf} from '../../../src/lib/secret.js'
import {createTestDatabase} from '../../helpers/test-database.js'

/** Keys CKAN never made but old databases hold: non-ASCII, quotes and commas, a formula. */
const ODD_KEYS = {'odd-comma': 'a,"b"', 'odd-formula': '=1+1', 'odd-unicode': 'clé-ünïcødé-🚀'}

describe('the per-user CSV report', () => {
  it('is the same file whether PostgreSQL writes it (COPY) or the rows stream through the cursor', async () => {
    const database = await createTestDatabase()
    const client = new pg.Client({connectionString: database.url})
    await client.connect()
    onTestFinished(() => client.end())
    await createCkanSchema(client, '2.9')
    await seedCkanSite(client, {seed: 'csv', siteId: 'default', users: 120, version: '2.9'})
    for (const [name, key] of Object.entries(ODD_KEYS))
      await client.query(
        `INSERT INTO "user" (id, name, apikey, state, sysadmin, email) VALUES (md5($1), $1, $2, 'active', NULL, '')`,
        [name, key],
      )
    const {rows: users} = await client.query<{apikey: null | string; name: string}>('SELECT name, apikey FROM "user"')
    const folder = await mkdtemp(join(tmpdir(), 'ckan-migrate-csv-'))
    onTestFinished(() => rm(folder, {force: true, recursive: true}))

    const written: Record<string, {rows: number; text: string}> = {}
    for (const method of ['copy', 'cursor'] as const) {
      const path = join(folder, `${method}.csv`)
      const progress = {advanced: 0, started: -1, stopped: false}
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY')
      const rows = await writeUserCsv(client, path, {
        hasApiTokenTable: true,
        method,
        progress: {
          advance: (n) => (progress.advanced += n),
          start: (total) => (progress.started = total),
          stop: () => (progress.stopped = true),
        },
      })
      await client.query('COMMIT')
      expect(rows).toBe(users.length)
      expect(progress).toEqual({advanced: users.length, started: users.length, stopped: true})
      expect((await stat(path)).mode & 0o777).toBe(0o600)
      written[method] = {rows, text: await readFile(path, 'utf8')}
    }
    expect(written.copy!.text).toBe(written.cursor!.text)
    expect(await readdir(folder)).toEqual(['copy.csv', 'cursor.csv']) // no scratch folder left behind

    const parsed = parse(written.copy!.text, {bom: true, columns: true}) as Array<Record<string, string>>
    expect(parsed).toHaveLength(users.length)
    for (const user of users) {
      const shown = user.name.match(/^[=+\-@\t\r]/) ? `'${user.name}` : user.name
      const row = parsed.find((candidate) => candidate.name === shown)
      expect(row, user.name).toBeDefined()
      expect(row!.key_fingerprint).toBe(user.apikey ? fingerprintOf(user.apikey) : '')
      expect(row!.has_legacy_key).toBe(user.apikey ? 'true' : 'false')
    }
    for (const hostile of HOSTILE_USERS.filter((user) => /^[=+\-@]/.test(user.name)))
      expect(parsed.map((row) => row.name)).toContain(`'${hostile.name}`)
    for (const user of users) if (user.apikey) expect(written.copy!.text).not.toContain(user.apikey)
  })
})
