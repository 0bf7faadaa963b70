import {PGlite} from '@electric-sql/pglite'
import {spawn} from 'node:child_process'
import {readFileSync, watch} from 'node:fs'
import {readFile, stat, writeFile} from 'node:fs/promises'
import {basename, join} from 'node:path'
import * as openpgp from 'openpgp'
import pg from 'pg'
import {describe, expect, it} from 'vitest'

import type {Queryable} from '../../src/lib/site/ckan-database.js'
import type {BackupSidecar} from '../../src/lib/backup/backup-sidecar.js'
import {createCkanSchema} from '../../src/sandbox/ckan-schema.js'
import {seedCkanSite} from '../../src/sandbox/ckan-site-seeder.js'
import {startEmbeddedPostgres} from '../../src/sandbox/embedded-postgres.js'
import {backupEmbeddedDatabase, verifyBackup} from '../../src/lib/workflows/backup.js'
import {runCli, runCliJson} from '../helpers/run-cli.js'
import {createTestDatabase, REAL_POSTGRES_URL} from '../helpers/test-database.js'
import {listFolder, makeThrowawayKey, temporaryFolder, useThrowawayGnupgHome} from '../lib/backup/throwaway-key.js'
import {skipWithoutRealPostgres} from '../helpers/requirements.js'

const ADMIN_KEY = '0b7e6a52-6c8c-4a4e-9d0c-8f1f5b2f7a11'

async function seededDatabase(): Promise<string> {
  const database = await createTestDatabase()
  const client = new pg.Client({connectionString: database.url})
  client.on('error', () => {})
  await client.connect()
  await createCkanSchema(client, '2.9')
  await seedCkanSite(client, {adminApiKey: ADMIN_KEY, seed: 'backup', siteId: 'default', users: 40, version: '2.9'})
  await client.end()
  return database.url
}

/** PGlite as a Queryable: multi-statement SQL through exec, parameterised SQL through query. */
function pgliteQueryable(db: PGlite): Queryable {
  return {
    query: async (text: string, values?: unknown[]) =>
      values ? db.query(text, values) : ((await db.exec(text)).at(-1) ?? {rows: []}),
  } as unknown as Queryable
}

/** Decrypts in memory and pipes the plain dump into the machine's pg_restore --list. */
async function restoreList(file: string, secretKeyFile: string, passphrase: string): Promise<string> {
  const privateKey = await openpgp.decryptKey({
    passphrase,
    privateKey: await openpgp.readPrivateKey({armoredKey: await readFile(secretKeyFile, 'utf8')}),
  })
  const message = await openpgp.readMessage({binaryMessage: new Uint8Array(await readFile(file))})
  const {data} = await openpgp.decrypt({decryptionKeys: privateKey, format: 'binary', message})
  const plain = Buffer.from(data as Uint8Array)
  expect(plain.subarray(0, 5).toString()).toBe('PGDMP')
  const child = spawn('pg_restore', ['--list'])
  let out = ''
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()))
  child.stdin.on('error', () => {})
  child.stdin.end(plain)
  const code = await new Promise((resolve) => child.on('close', resolve))
  expect(code).toBe(0)
  return out
}

/** Records every file that appears in `dir` and what its first bytes were at that moment. */
function watchFolder(dir: string) {
  const seen = new Map<string, string[]>()
  const watcher = watch(dir, (_event, name) => {
    if (!name) return
    try {
      const head = readFileSync(join(dir, name)).subarray(0, 64).toString('latin1')
      seen.set(name, [...(seen.get(name) ?? []), head])
    } catch {
      seen.set(name, seen.get(name) ?? [])
    }
  })
  return {seen, stop: () => watcher.close()}
}

/** `backup` of the database at `url` into `dir`, encrypted to a throwaway key's public half. */
function backupArgs(key: {publicKeyFile: string}, url: string, dir: string, ...extra: string[]): string[] {
  return ['backup', '--database-url', url, '--dir', dir, '--recipient-key', key.publicKeyFile, ...extra]
}

describe('backup', () => {
  it('writes an encrypted pg_dump that round-trips through decryption and pg_restore --list, and never a plain byte', async (context) => {
    skipWithoutRealPostgres(context)
    const url = await seededDatabase()
    const key = await makeThrowawayKey()
    const dir = await temporaryFolder('ckan-backup-')
    const watcher = watchFolder(dir)
    const run = await runCliJson<{file: string; sha256: string; sidecar: string; tables: string[]}>(
      backupArgs(key, url, dir),
    )
    watcher.stop()
    expect(run.exitCode, run.stdout + run.stderr).toBe(0)
    const {file, sidecar, tables} = run.json.result!
    const database = new URL(url).pathname.slice(1)
    expect(basename(file)).toMatch(new RegExp(`^ckan-db_${database}_\\d{8}T\\d{6}Z_${key.keyId}\\.pgc\\.gpg$`))
    expect(await listFolder(dir)).toEqual([basename(file), `${basename(file)}.json`].sort())
    expect((await stat(file)).mode & 0o777).toBe(0o600)
    expect((await stat(dir)).mode & 0o777).toBe(0o700)
    expect(tables).toEqual(expect.arrayContaining(['public.api_token', 'public.user', 'public.alembic_version']))

    // Every file that ever appeared was the sidecar or OpenPGP data: never a plain dump.
    for (const [name, heads] of watcher.seen) {
      for (const head of heads) {
        expect(head.startsWith('PGDMP'), name).toBe(false)
        if (head.length > 0 && !head.startsWith('{')) expect(head.charCodeAt(0) & 0x80, name).toBe(0x80)
      }
    }
    const cipher = await readFile(file)
    expect(cipher.includes(ADMIN_KEY)).toBe(false)
    expect(cipher.includes('admin@example.org')).toBe(false)

    const meta = JSON.parse(await readFile(sidecar, 'utf8')) as BackupSidecar
    expect(meta.bytes).toBe(cipher.length)
    expect(meta.sha256).toBe(run.json.result!.sha256)
    expect(meta.encryption.keyId).toBe(key.keyId)

    const listing = await restoreList(file, key.secretKeyFile, key.passphrase)
    expect(listing).toMatch(/TABLE DATA public user /)

    process.env.CKAN_MIGRATE_SECRET_KEY_PASSPHRASE = key.passphrase
    try {
      const verified = await runCli(['backup', '--verify', file, '--secret-key', key.secretKeyFile])
      expect(verified.exitCode, verified.stderr).toBe(0)
      expect(verified.stdout).toMatch(/decrypts intact/)

      // A flipped byte in the middle is caught.
      const tampered = Buffer.from(cipher)
      tampered[Math.floor(tampered.length / 2)]! ^= 0xff
      await writeFile(file, tampered)
      const broken = await runCli(['backup', '--verify', file, '--secret-key', key.secretKeyFile])
      expect(broken.exitCode).toBe(6)
      expect(broken.error?.message).not.toContain('\n')
    } finally {
      delete process.env.CKAN_MIGRATE_SECRET_KEY_PASSPHRASE
    }
  })

  it('encrypts to a key id of the GnuPG keyring, and refuses an unknown one without leaving a file', async (context) => {
    skipWithoutRealPostgres(context)
    const url = await seededDatabase()
    const key = await makeThrowawayKey()
    await useThrowawayGnupgHome(key)
    const dir = await temporaryFolder('ckan-backup-')
    const run = await runCliJson<{file: string}>(['backup', '--database-url', url, '--dir', dir, '--key-id', key.keyId])
    expect(run.exitCode, run.stdout).toBe(0)
    expect(run.json.result!.file).toMatch(new RegExp(`_${key.keyId}\\.pgc\\.gpg$`))
    const verified = await verifyBackup({
      file: run.json.result!.file,
      passphrase: {reveal: () => key.passphrase} as never,
      secretKey: key.secretKeyFile,
    })
    expect(verified.checksum).toBe('match')
    expect(verified.tables).toContain('public.user')

    const other = await temporaryFolder('ckan-backup-')
    const unknown = await runCliJson(['backup', '--database-url', url, '--dir', other, '--key-id', 'DEADBEEFDEADBEEF'])
    expect(unknown.exitCode).toBe(7)
    expect(unknown.json.error?.message).toMatch(/No key DEADBEEFDEADBEEF in the GnuPG keyring/)
    expect(await listFolder(other)).toEqual([])
  })

  it('refuses a server newer than pg_dump (PGlite is PostgreSQL 18) in one line, exit 12, writing nothing', async () => {
    const embedded = await startEmbeddedPostgres()
    try {
      await createCkanSchema(pgliteQueryable(embedded.db), '2.9')
      const key = await makeThrowawayKey()
      const dir = join(await temporaryFolder('ckan-backup-'), 'new')
      const run = await runCli(backupArgs(key, embedded.url, dir))
      expect(run.exitCode).toBe(12)
      expect(run.error?.message).toMatch(/^pg_dump 1\d cannot dump a PostgreSQL 18 server/)
      expect(run.error?.message).not.toContain('\n')
      expect(await listFolder(dir)).toEqual([])
    } finally {
      await embedded.stop()
    }
  })

  it('ends with a documented one-line error and no file for a missing pg_dump, an unreachable database, a bad key or an unwritable folder', async () => {
    const key = await makeThrowawayKey()
    const tmp = await temporaryFolder('ckan-backup-')
    const dir = join(tmp, 'out')
    const url = 'postgresql://ckan:s3cret-pw@127.0.0.1:9/ckan'
    const noTool = await runCliJson(backupArgs(key, url, dir, '--pg-bin', tmp))
    expect(noTool.json.error).toMatchObject({code: 'toolMissing'})
    expect(noTool.exitCode).toBe(12)
    const unreachable = await runCliJson(backupArgs(key, url, dir))
    expect(unreachable.exitCode).toBe(8)
    expect(unreachable.stdout).not.toContain('s3cret-pw')
    const notAKey = await runCli([
      'backup',
      '--database-url',
      url,
      '--dir',
      dir,
      '--recipient-key',
      key.secretKeyFile.replace('secret', 'nothing'),
    ])
    expect(notAKey.exitCode).toBe(7)
    await writeFile(join(tmp, 'plain-file'), 'x')
    const realUrl = REAL_POSTGRES_URL ? await seededDatabase() : undefined
    if (realUrl) {
      // A file in the way is bad input (7); a folder nobody may create (EPERM under /sys, even for root) is a write failure (13).
      const fileInTheWay = await runCli([
        'backup',
        '--database-url',
        realUrl,
        '--dir',
        join(tmp, 'plain-file', 'sub'),
        '--recipient-key',
        key.publicKeyFile,
      ])
      expect(fileInTheWay.exitCode).toBe(7)
      expect(fileInTheWay.error?.message).toMatch(
        /^the backup folder .* cannot be created: a part of its path is a file/,
      )
      const unwritable = await runCli(backupArgs(key, realUrl, '/sys/ckan-migrate-backups'))
      expect(unwritable.exitCode).toBe(13)
      expect(unwritable.error?.message).toMatch(/^Cannot write into the backup folder /)
      const dry = await runCliJson<{dryRun: boolean; file: string}>(backupArgs(key, realUrl, dir, '--dry-run'))
      expect(dry.exitCode).toBe(0)
      expect(dry.json.result).toMatchObject({dryRun: true})
    }
    expect(await listFolder(dir)).toEqual([])
  })
})

describe('backupEmbeddedDatabase (the sandbox path)', () => {
  it('dumps PGlite as plain SQL with pglite-tools, encrypted, and verifies it', async () => {
    const db = new PGlite()
    try {
      await db.waitReady
      await createCkanSchema(pgliteQueryable(db), '2.10')
      await seedCkanSite(pgliteQueryable(db), {seed: 'sandbox', siteId: 'sandbox', users: 20, version: '2.10'})
      const key = await makeThrowawayKey()
      const dir = await temporaryFolder('ckan-backup-')
      const result = await backupEmbeddedDatabase({db, dir, recipient: {keyFile: key.publicKeyFile}, site: 'sandbox'})
      expect(basename(result.file)).toMatch(new RegExp(`^ckan-db_sandbox_\\d{8}T\\d{6}Z_${key.keyId}\\.sql\\.gpg$`))
      expect(result.tables).toEqual(expect.arrayContaining(['public.user', 'public.api_token']))
      expect(await listFolder(dir)).toEqual([basename(result.file), `${basename(result.file)}.json`].sort())
      expect((await readFile(result.file)).includes('CREATE TABLE')).toBe(false)

      process.env.CKAN_MIGRATE_SECRET_KEY_PASSPHRASE = key.passphrase
      try {
        const verified = await runCliJson<{checksum: string; dumpFormat: string; tables: string[]}>([
          'backup',
          '--verify',
          result.file,
          '--secret-key',
          key.secretKeyFile,
        ])
        expect(verified.exitCode, verified.stdout).toBe(0)
        expect(verified.json.result).toMatchObject({checksum: 'match', dumpFormat: 'plain-sql'})
        expect(verified.json.result!.tables).toContain('public.user')
      } finally {
        delete process.env.CKAN_MIGRATE_SECRET_KEY_PASSPHRASE
      }
      const wrongKey = await makeThrowawayKey()
      await expect(
        verifyBackup({
          file: result.file,
          passphrase: {reveal: () => wrongKey.passphrase} as never,
          secretKey: wrongKey.secretKeyFile,
        }),
      ).rejects.toMatchObject({exitCode: 7})
      // The sandbox still answers queries after the dump.
      expect((await db.query<{n: number}>('SELECT count(*)::int AS n FROM "user"')).rows[0]!.n).toBe(20)
    } finally {
      await db.close()
    }
  })
})
