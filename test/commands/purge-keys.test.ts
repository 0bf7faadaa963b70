import {parse} from 'csv-parse/sync'
import {createHash, randomBytes} from 'node:crypto'
import {readdir, readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import pg from 'pg'
import {describe, expect, it, onTestFinished} from 'vitest'

import type {BackupSidecar} from '../../src/lib/backup/backup-sidecar.js'
import {openRunFolder} from '../../src/lib/run/run-folder.js'
import {createCkanSchema} from '../../src/sandbox/ckan-schema.js'
import {type CkanVersion} from '../../src/lib/site/ckan-version.js'
import {seedCkanSite} from '../../src/sandbox/ckan-site-seeder.js'
import {fingerprintOf} from '../../src/lib/secret.js'
import {backupDatabase} from '../../src/lib/workflows/backup.js'
import {purgeKeys} from '../../src/lib/workflows/purge-keys.js'
import {runCli, runCliJson} from '../helpers/run-cli.js'
import {createTestDatabase, REAL_POSTGRES_URL} from '../helpers/test-database.js'
import {makeThrowawayKey, temporaryFolder} from '../lib/backup/throwaway-key.js'
import {skipWithoutRealPostgres} from '../helpers/requirements.js'

type UserRow = Record<string, unknown> & {apikey: null | string; id: string; name: string}

const SNAPSHOT = 'SELECT * FROM "user" ORDER BY id'

async function seededSite(version: CkanVersion) {
  const database = await createTestDatabase()
  const client = new pg.Client({connectionString: database.url})
  client.on('error', () => {}) // the database is dropped (WITH FORCE) when the test ends
  await client.connect()
  onTestFinished(() => client.end().catch(() => {}))
  await createCkanSchema(client, version)
  await seedCkanSite(client, {seed: 'purge', siteId: 'default', users: 60, version})
  const snapshot = async () => (await client.query<UserRow>(SNAPSHOT)).rows
  return {client, snapshot, url: database.url}
}

/** A backup file with a sidecar exactly as `backup` writes them (the bytes stand in for the encrypted dump). */
async function fakeBackup(client: pg.Client, dir: string, changes: Partial<BackupSidecar> = {}): Promise<string> {
  const file = join(dir, 'ckan-db_default_20261122T020000Z_0123456789ABCDEF.pgc.gpg')
  const bytes = Buffer.from('\xc1 stand-in for an OpenPGP message', 'latin1')
  await writeFile(file, bytes, {mode: 0o600})
  const database = (await client.query('SELECT current_database() AS d')).rows[0].d as string
  const oldest = (await client.query('SELECT id FROM "user" ORDER BY created NULLS LAST, id LIMIT 1')).rows[0]
    .id as string
  const sidecar: BackupSidecar = {
    bytes: bytes.length,
    createdAt: new Date(Date.now() - 3_600_000).toISOString(),
    dumpFormat: 'pg_dump-custom',
    dumpedWith: 'pg_dump 15',
    encryption: {engine: 'openpgp.js', fingerprint: '0'.repeat(40), keyId: '0123456789ABCDEF', userIds: []},
    file: 'x',
    format: 1,
    identity: {database, oldestUserId: oldest},
    serverVersion: '15',
    sha256: createHash('sha256').update(bytes).digest('hex'),
    site: 'default',
    tables: ['public.user'],
    tool: 'ckan-migrate backup',
    ...changes,
  }
  await writeFile(`${file}.json`, JSON.stringify(sidecar))
  return file
}

async function writeIni(dir: string, url: string, plugins: string): Promise<string> {
  const path = join(dir, 'ckan.ini')
  await writeFile(
    path,
    `[app:main]\nsqlalchemy.url = ${url}\nckan.site_id = default\nckan.site_url = https://data.example.org\nckan.plugins = ${plugins}\n`,
  )
  return path
}

/** Writes a run folder whose journal says which tokens verified, with every twist of the rule. */
async function runFolderFor(client: pg.Client) {
  const dir = join(await temporaryFolder('ckan-run-'), 'run')
  const run = await openRunFolder(dir, {
    create: true,
    site: {ckanUrl: 'https://data.example.org', siteUserName: 'default'},
  })
  const withKey = (
    await client.query<UserRow>(
      `SELECT id, name FROM "user" WHERE apikey IS NOT NULL AND name LIKE 'user-%' ORDER BY name LIMIT 4`,
    )
  ).rows
  const withoutKey = (
    await client.query<UserRow>(`SELECT id, name FROM "user" WHERE apikey IS NULL ORDER BY name LIMIT 1`)
  ).rows[0]!
  const site = (await client.query<UserRow>(`SELECT id, name FROM "user" WHERE name = 'default'`)).rows[0]!
  const [a, b, c, d] = withKey as [UserRow, UserRow, UserRow, UserRow]
  const verified = (user: UserRow, ok: boolean, jti: string) =>
    run.record({
      jtiFingerprint: jti,
      kind: 'token-verified',
      ok,
      status: ok ? 'ok' : 'rejected',
      userId: user.id,
      userName: user.name,
    })
  await verified(a, true, 'aaaa0001')
  await verified(b, true, 'bbbb0001')
  await verified(c, false, 'cccc0001')
  await verified(d, true, 'dddd0001')
  await verified(site, true, 'ssss0001')
  await verified(withoutKey, true, 'nnnn0001')
  await verified({apikey: null, id: 'not-a-user-of-this-site', name: 'ghost'}, true, 'gggg0001')
  await verified(b, false, 'bbbb0001') // the latest verification wins
  await verified(c, true, 'cccc0002')
  await run.record({jtiFingerprint: 'dddd0001', kind: 'token-revoked', userId: d.id, userName: d.name}) // revoked since
  return {dir, expected: [a, c], site}
}

/** Rows that differ between two snapshots, by id, and the columns that differ. */
function differences(before: UserRow[], after: UserRow[]) {
  const changed: Record<string, string[]> = {}
  for (const [index, row] of before.entries()) {
    const other = after[index]!
    expect(other.id).toBe(row.id)
    const columns = Object.keys(row).filter((column) => JSON.stringify(row[column]) !== JSON.stringify(other[column]))
    if (columns.length > 0) changed[row.name] = columns
  }
  expect(after).toHaveLength(before.length)
  return changed
}

describe('purge-keys', () => {
  it('clears exactly the keys of users whose token verified, keeps the 2.9 site user, and its dry run changes nothing', async () => {
    const site = await seededSite('2.9')
    const {dir, expected} = await runFolderFor(site.client)
    const tmp = await temporaryFolder('ckan-purge-')
    const ini = await writeIni(tmp, site.url, 'datapusher activity')
    const backup = await fakeBackup(site.client, tmp)
    const before = await site.snapshot()
    const keys = new Map(before.map((row) => [row.id, row.apikey]))
    const args = ['purge-keys', '--ckan-ini', ini, '--out', dir, '--backup', backup]

    const dry = await runCliJson<Record<string, unknown>>([...args, '--dry-run'])
    expect(dry.exitCode, dry.stdout).toBe(0)
    expect(dry.json.result).toMatchObject({
      ckanSeries: '2.9',
      csv: null,
      dryRun: true,
      purged: 2,
      selected: 5,
      skipped: {alreadyWithoutKey: 1, notInDatabase: 1, siteUser: 1},
    })
    expect(dry.json.warnings.join('\n')).toMatch(/needs --confirm-2\.9/)
    expect(await site.snapshot()).toEqual(before)
    expect((await readdir(dir)).filter((name) => name.endsWith('.csv'))).toEqual([])

    const unconfirmed = await runCli(args)
    expect(unconfirmed.exitCode).toBe(7)
    expect(unconfirmed.error?.message).toMatch(/still runs CKAN 2\.9/)
    expect(await site.snapshot()).toEqual(before)

    const run = await runCliJson<{csv: string; purged: number}>([...args, '--confirm-2.9'])
    expect(run.exitCode, run.stdout).toBe(0)
    expect(run.json.warnings.join('\n')).toMatch(
      /Keeping the site user default's key: on CKAN 2\.9 DataPusher is enabled/,
    )
    const after = await site.snapshot()
    expect(differences(before, after)).toEqual(Object.fromEntries(expected.map((user) => [user.name, ['apikey']])))
    for (const user of expected) expect(after.find((row) => row.id === user.id)!.apikey).toBeNull()

    const csvText = await readFile(run.json.result!.csv, 'utf8')
    const rows = parse(csvText.replace(/^\uFEFF/, ''), {columns: true}) as Array<Record<string, string>>
    expect(rows.map((row) => row.user_id).sort()).toEqual(expected.map((user) => user.id).sort())
    for (const row of rows) expect(row.key_fingerprint).toBe(fingerprintOf(keys.get(row.user_id!)!))
    for (const user of expected) expect(csvText + run.stdout).not.toContain(keys.get(user.id)!)

    const journal = await (await openRunFolder(dir, {create: false})).journal.readAll()
    const purged = journal.filter((entry) => entry.kind === 'keys-purged')
    expect(purged).toMatchObject([{count: 2, userIds: expect.arrayContaining(expected.map((user) => user.id))}])
    expect(journal.filter((entry) => entry.kind === 'user-skipped')).toMatchObject([{userName: 'default'}])
    expect(JSON.stringify(journal)).not.toContain(keys.get(expected[0]!.id)!)

    // Run again: nothing left to clear, nothing else touched.
    const again = await runCliJson<{purged: number}>([...args, '--confirm-2.9'])
    expect(again.json.result!.purged).toBe(0)
    expect(await site.snapshot()).toEqual(after)
  })

  it('clears the site user too with --include-site-user', async () => {
    const site = await seededSite('2.9')
    const {dir, expected, site: siteUser} = await runFolderFor(site.client)
    const tmp = await temporaryFolder('ckan-purge-')
    const ini = await writeIni(tmp, site.url, 'xloader')
    const before = await site.snapshot()
    const run = await runCliJson([
      'purge-keys',
      '--ckan-ini',
      ini,
      '--out',
      dir,
      '--no-backup',
      '--confirm-2.9',
      '--include-site-user',
    ])
    expect(run.exitCode, run.stdout).toBe(0)
    expect(Object.keys(differences(before, await site.snapshot())).sort()).toEqual(
      [...expected.map((user) => user.name), siteUser.name].sort(),
    )
  })

  it('refuses without a backup, with a stale, changed or foreign one, changing nothing', async () => {
    const site = await seededSite('2.10')
    const {dir} = await runFolderFor(site.client)
    const tmp = await temporaryFolder('ckan-purge-')
    const before = await site.snapshot()
    const base = ['purge-keys', '--database-url', site.url, '--out', dir]

    const none = await runCliJson(base)
    expect(none.exitCode).toBe(7)
    expect(none.json.error?.message).toMatch(/needs --backup FILE/)

    const stale = await fakeBackup(site.client, tmp, {createdAt: new Date(Date.now() - 30 * 3_600_000).toISOString()})
    const old = await runCliJson([...base, '--backup', stale])
    expect(old.exitCode).toBe(7)
    expect(old.json.error?.message).toMatch(/30\.0 hours old, more than --max-backup-age 24/)
    expect((await runCliJson([...base, '--backup', stale, '--max-backup-age', '48', '--dry-run'])).exitCode).toBe(0)

    const foreign = await fakeBackup(site.client, tmp, {identity: {database: 'other_site', oldestUserId: 'x'}})
    expect((await runCliJson([...base, '--backup', foreign])).json.error?.message).toMatch(/is of another database/)

    const changed = await fakeBackup(site.client, tmp)
    await writeFile(changed, 'tampered')
    expect((await runCliJson([...base, '--backup', changed])).json.error?.message).toMatch(/does not match the SHA-256/)

    expect((await runCliJson([...base, '--backup', join(tmp, 'missing.pgc.gpg')])).json.error?.message).toMatch(
      /has no readable sidecar/,
    )
    expect(await site.snapshot()).toEqual(before)
  })

  it('--all on a 2.10 site clears every key, the site user included, and nothing else', async () => {
    const site = await seededSite('2.10')
    const {dir} = await runFolderFor(site.client)
    const before = await site.snapshot()
    const run = await runCliJson<{purged: number; siteUser: {protected: boolean}}>([
      'purge-keys',
      '--database-url',
      site.url,
      '--out',
      dir,
      '--all',
      '--no-backup',
    ])
    expect(run.exitCode, run.stdout).toBe(0)
    const holders = before.filter((row) => row.apikey !== null)
    expect(run.json.result).toMatchObject({ckanSeries: '2.10+', purged: holders.length, siteUser: {protected: false}})
    const changed = differences(before, await site.snapshot())
    expect(Object.keys(changed).sort()).toEqual(holders.map((row) => row.name).sort())
    expect(new Set(Object.values(changed).flat())).toEqual(new Set(['apikey']))
  })

  it('two runs in the same second keep both CSV records (the second gets its own name)', async () => {
    const site = await seededSite('2.10')
    const {dir, expected, site: siteUser} = await runFolderFor(site.client)
    const now = new Date('2026-11-22T03:15:00.250Z')
    const options = {
      all: false,
      backup: 'none',
      confirm29: false,
      databaseUrl: site.url,
      dryRun: false,
      includeSiteUser: false,
      now,
      out: dir,
    } as const
    const first = await purgeKeys(options)
    // 2.10: the verified site user's key goes too.
    const firstIds = [...expected.map((user) => user.id), siteUser.id].sort()
    expect(first.purged).toBe(firstIds.length)
    const another = (
      await site.client.query<UserRow>(
        `SELECT id, name FROM "user" WHERE apikey IS NOT NULL AND name LIKE 'user-%' ORDER BY name DESC LIMIT 1`,
      )
    ).rows[0]!
    const run = await openRunFolder(dir, {create: false})
    await run.record({
      jtiFingerprint: 'eeee0001',
      kind: 'token-verified',
      ok: true,
      status: 'ok',
      userId: another.id,
      userName: another.name,
    })
    await run.close()
    const second = await purgeKeys({...options, now: new Date('2026-11-22T03:15:00.900Z')})
    expect(second.purged).toBe(1)
    expect(second.csv).not.toBe(first.csv)
    const csvs = (await readdir(dir)).filter((name) => name.endsWith('.csv')).sort()
    expect(csvs).toEqual(['purge-keys_20261122T031500Z-2.csv', 'purge-keys_20261122T031500Z.csv'])
    const ids = async (path: string) =>
      (
        parse((await readFile(path, 'utf8')).replace(/^\uFEFF/, ''), {columns: true}) as Array<Record<string, string>>
      ).map((row) => row.user_id)
    expect((await ids(first.csv!)).sort()).toEqual(firstIds)
    expect(await ids(second.csv!)).toEqual([another.id])
  })

  it('accepts a real backup made by ckan-migrate backup of this database', async (context) => {
    skipWithoutRealPostgres(context)
    const site = await seededSite('2.10')
    const {dir, expected} = await runFolderFor(site.client)
    const key = await makeThrowawayKey()
    const backups = await temporaryFolder('ckan-backups-')
    const backup = await backupDatabase({databaseUrl: site.url, dir: backups, recipient: {keyFile: key.publicKeyFile}})
    const run = await runCliJson<{backup: {file: string}; purged: number}>([
      'purge-keys',
      '--database-url',
      site.url,
      '--out',
      dir,
      '--backup',
      backup.file,
    ])
    expect(run.exitCode, run.stdout).toBe(0)
    expect(run.json.result).toMatchObject({backup: {file: backup.file}, purged: expected.length + 1})
  })

  it('with a SELECT-only role or a read-only server: names the missing privilege, exit 8, changes nothing', async (context) => {
    skipWithoutRealPostgres(context)
    const site = await seededSite('2.10')
    const {dir} = await runFolderFor(site.client)
    const before = await site.snapshot()
    const role = `purge_ro_${randomBytes(4).toString('hex')}`
    const database = new URL(site.url).pathname.slice(1)
    const admin = new pg.Client({connectionString: REAL_POSTGRES_URL})
    await admin.connect()
    onTestFinished(async () => {
      await admin.query(`DROP OWNED BY ${role}`).catch(() => {})
      await admin.query(`DROP ROLE IF EXISTS ${role}`).catch(() => {})
      await admin.end()
    })
    await admin.query(`CREATE ROLE ${role} LOGIN`)
    await site.client.query(`GRANT CONNECT ON DATABASE ${database} TO ${role}`)
    await site.client.query(`GRANT USAGE ON SCHEMA public TO ${role}`)
    await site.client.query(`GRANT SELECT ON ALL TABLES IN SCHEMA public TO ${role}`)
    const url = new URL(site.url)
    url.username = role
    const args = ['purge-keys', '--database-url', url.href, '--out', dir, '--all', '--no-backup']

    const dry = await runCliJson([
      'purge-keys',
      '--database-url',
      url.href,
      '--out',
      dir,
      '--all',
      '--no-backup',
      '--dry-run',
    ])
    expect(dry.exitCode, dry.stdout).toBe(0)
    const denied = await runCliJson(args)
    expect(denied.json, denied.stdout).toMatchObject({error: {code: 'databaseUnreachable'}, status: 8})
    expect(denied.json.error!.message).toMatch(/lacks the UPDATE privilege on table "user"/)
    expect(denied.json.error!.suggestion).toMatch(/GRANT UPDATE ON "user"/)
    expect(denied.json.error!.message).not.toMatch(/bug/)

    // UPDATE granted, but the role's transactions are read-only (as on a hot standby).
    await site.client.query(`GRANT UPDATE ON "user" TO ${role}`)
    await admin.query(`ALTER ROLE ${role} SET default_transaction_read_only = on`)
    const readOnly = await runCliJson(args)
    expect(readOnly.json, readOnly.stdout).toMatchObject({error: {code: 'databaseUnreachable'}, status: 8})
    expect(readOnly.json.error!.message).toMatch(/accepts no writes: cannot execute .* in a read-only transaction/)
    expect(readOnly.json.error!.suggestion).toMatch(/primary/)
    expect(await site.snapshot()).toEqual(before)
  })
})
