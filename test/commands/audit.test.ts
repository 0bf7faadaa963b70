import {parse} from 'csv-parse/sync'
import {randomBytes} from 'node:crypto'
import {createServer} from 'node:http'
import {copyFile, mkdtemp, readFile, stat, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import pg from 'pg'
import {describe, expect, it, onTestFinished} from 'vitest'

import {EXIT_CODES} from '../../src/lib/errors.js'
import {fingerprintOf} from '../../src/lib/secret.js'
import {createCkanSchema} from '../../src/sandbox/ckan-schema.js'
import {ALEMBIC_HEADS, CKAN_VERSIONS, type CkanVersion} from '../../src/lib/site/ckan-version.js'
import {HOSTILE_USERS, seedCkanSite} from '../../src/sandbox/ckan-site-seeder.js'
import type {AuditResult} from '../../src/lib/workflows/audit.js'
import {runCli, runCliJson} from '../helpers/run-cli.js'
import {createTestDatabase, REAL_POSTGRES_URL} from '../helpers/test-database.js'
import {skipAsRoot, skipWithoutRealPostgres} from '../helpers/requirements.js'

const FIXTURES = new URL('../fixtures/audit/', import.meta.url).pathname
const ADMIN_KEY = '5f0e2c3a-1b2c-4d5e-8f90-0123456789ab'

type Site = {query: <Row = Record<string, number>>(text: string, values?: unknown[]) => Promise<Row[]>; url: string}

/** A fresh database with CKAN `version`'s schema and a seeded site (hostile names included). */
async function seededSite(version: CkanVersion, users = 1500): Promise<Site> {
  const database = await createTestDatabase()
  const client = new pg.Client({connectionString: database.url})
  await client.connect()
  await createCkanSchema(client, version, {harvest: true})
  await seedCkanSite(client, {
    adminApiKey: ADMIN_KEY,
    harvestSources: true,
    seed: 'audit',
    siteId: 'default',
    users,
    version,
  })
  await client.end()
  return {query: (text, values) => queryOnce(database.url, text, values), url: database.url}
}

/** One statement on its own connection, in a read-write transaction (PGlite shares one session with the audit). */
async function queryOnce<Row>(url: string, text: string, values?: unknown[]): Promise<Row[]> {
  const client = new pg.Client({connectionString: url})
  await client.connect()
  try {
    await client.query('BEGIN READ WRITE')
    const {rows} = await client.query(text, values)
    await client.query('COMMIT')
    return rows as Row[]
  } finally {
    await client.end()
  }
}

async function scratchFolder(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'audit-test-'))
}

function finding(result: AuditResult | undefined, id: string) {
  return result?.findings.find((item) => item.id === id)
}

function expectOneLineError(run: {stderr: string; stdout: string}) {
  const output = `${run.stdout}\n${run.stderr}`
  expect(output).not.toMatch(/^\s+at /m)
  expect(output).not.toMatch(/node_modules|\.ts:\d+/)
}

describe('ckan-migrate audit', () => {
  for (const version of CKAN_VERSIONS) {
    it(`finds every legacy-key problem of a seeded CKAN ${version} site and says NOT READY (exit 10)`, async () => {
      const site = await seededSite(version)
      // Two hostile users share an address: only 2.9 allows it (2.10's migration 102 added a unique index).
      if (version === '2.9')
        await site.query(`UPDATE "user" SET email = 'hostile2@example.org' WHERE email = 'hostile3@example.org'`)
      const folder = await scratchFolder()
      const csvPath = join(folder, 'users.csv')
      const run = await runCliJson<AuditResult>([
        'audit',
        '--database-url',
        site.url,
        '--ckan-ini',
        join(FIXTURES, 'legacy-2.9.ini'),
        '--csv',
        csvPath,
      ])
      expect(run.exitCode).toBe(10)
      expect(run.json.status).toBe(10)
      const result = run.json.result!
      expect(result.verdict.status).toBe('NOT READY')
      expect(result.ckan).toMatchObject({alembicHeads: [ALEMBIC_HEADS[version]], version})

      // Ground truth, counted independently of the audit.
      const [truth] = await site.query(`
        SELECT count(*)::int AS users,
               (count(*) FILTER (WHERE apikey IS NOT NULL))::int AS keys,
               (count(*) FILTER (WHERE apikey IS NOT NULL AND state = 'pending'))::int AS pending_keys,
               (count(*) FILTER (WHERE apikey IS NOT NULL AND state = 'active' AND name <> 'default'
                  AND NOT EXISTS (SELECT 1 FROM api_token t WHERE t.user_id = u.id)))::int AS without_token,
               (count(*) FILTER (WHERE apikey IS NOT NULL AND state = 'active' AND sysadmin AND name <> 'default'))::int AS sysadmin_keys,
               (count(*) FILTER (WHERE apikey !~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'))::int AS not_uuid,
               (count(*) FILTER (WHERE apikey IN (SELECT apikey FROM "user" GROUP BY apikey HAVING count(*) > 1)))::int AS duplicated,
               (count(*) FILTER (WHERE state = 'active' AND email IS NULL AND name <> 'default'))::int AS without_email,
               (count(*) FILTER (WHERE state = 'active' AND email IN
                  (SELECT email FROM "user" WHERE state = 'active' GROUP BY email HAVING count(*) > 1)))::int AS duplicate_emails,
               (SELECT count(*)::int FROM api_token) AS tokens,
               (SELECT count(*)::int FROM api_token WHERE last_access IS NULL) AS unused
        FROM "user" u`)
      expect(truth!.not_uuid).toBeGreaterThan(0)
      expect(truth!.duplicated).toBeGreaterThan(0)
      expect(finding(result, 'legacy-keys')).toMatchObject({count: truth!.keys, severity: 'info'})
      expect(finding(result, 'legacy-keys')!.details).toMatchObject({pending: truth!.pending_keys})
      expect(finding(result, 'legacy-keys-without-token')).toMatchObject({
        count: truth!.without_token,
        severity: 'blocker',
      })
      expect(finding(result, 'sysadmin-legacy-keys')).toMatchObject({count: truth!.sysadmin_keys, severity: 'warning'})
      expect(finding(result, 'sysadmin-legacy-keys')!.sample).toContain('admin')
      expect(finding(result, 'site-user-legacy-key')).toMatchObject({count: 1, sample: ['default']})
      expect(finding(result, 'legacy-keys-not-uuid')?.count).toBe(truth!.not_uuid)
      expect(finding(result, 'legacy-keys-duplicated')?.count).toBe(truth!.duplicated)
      expect(finding(result, 'api-tokens')?.count).toBe(truth!.tokens)
      expect(finding(result, 'api-tokens-never-used')?.count).toBe(truth!.unused)
      expect(finding(result, 'legacy-key-holders-with-tokens')?.count).toBeGreaterThan(0)
      expect(finding(result, 'users-without-email')).toMatchObject({count: truth!.without_email, severity: 'warning'})
      // Only 2.9 can hold duplicate active emails: 2.10's migration 102 forbids them.
      if (version === '2.9') {
        expect(truth!.duplicate_emails).toBeGreaterThan(0)
        expect(finding(result, 'duplicate-active-emails')).toMatchObject({
          count: truth!.duplicate_emails,
          severity: 'blocker',
        })
        expect(finding(result, 'duplicate-active-emails')!.sample).toEqual(
          expect.arrayContaining([HOSTILE_USERS[2]!.name, HOSTILE_USERS[3]!.name]),
        )
      } else {
        expect(finding(result, 'duplicate-active-emails')).toBeUndefined()
      }
      expect(finding(result, 'harvest-sources-with-api-key')).toMatchObject({count: 3, severity: 'warning'})
      expect(finding(result, 'harvest-sources-with-api-key')!.sample[0]).toBe(
        'Remote portal 1 (https://remote1.example.org/)',
      )
      expect(result.summary.users.total).toBe(truth!.users)

      // The hostile names appear as they are in JSON (nothing neutralised there).
      const sample = finding(result, 'legacy-keys')!.sample
      for (const name of ['=hyperlink("http://x")', '../../etc/passwd', 'tab\tname']) expect(sample).toContain(name)

      // Config: 2.9 lowercases Beaker.Session.Secret; 2.10+ keep its case, so there is no fallback secret at all.
      expect(finding(result, 'jwt-secrets-not-pinned')).toMatchObject({count: 2, severity: 'blocker'})
      expect(finding(result, 'jwt-secret-unavailable') === undefined).toBe(version === '2.9')
      expect(finding(result, 'service-token-missing')!.sample).toEqual([
        'datapusher (ckan.datapusher.api_token)',
        'xloader (ckanext.xloader.api_token)',
      ])
      for (const id of [
        'apikey-header-name-set',
        'create-default-api-keys',
        'tokens-never-expire',
        'xloader-jobs-db-unreachable',
      ])
        expect(finding(result, id), id).toBeDefined()
      // ckan.auth.enable_cookie_auth_in_api exists from 2.10 on.
      expect(finding(result, 'cookie-auth-in-api') === undefined).toBe(version === '2.9')
      // Samples are sorted (the database meets the names in no useful order).
      for (const item of result.findings)
        expect(item.sample, item.id).toEqual([...item.sample].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)))
      expect(finding(result, 'legacy-keys')!.sample).toHaveLength(10)
      expect(result.findings.map((item) => item.severity)).toEqual(
        [...result.findings.map((item) => item.severity)].sort(
          (a, b) => ['blocker', 'warning', 'info'].indexOf(a) - ['blocker', 'warning', 'info'].indexOf(b),
        ),
      )

      // The CSV: one row per user, the key only as a fingerprint, formulas neutralised.
      expect((await stat(csvPath)).mode & 0o777).toBe(0o600)
      expect((await stat(folder)).mode & 0o777).toBe(0o700) // mkdtemp's own mode, left alone
      const csvText = await readFile(csvPath, 'utf8')
      const rows = parse(csvText, {bom: true, columns: true}) as Array<Record<string, string>>
      expect(rows).toHaveLength(truth!.users!)
      expect(Object.keys(rows[0]!)).toEqual([
        'id',
        'name',
        'state',
        'sysadmin',
        'has_email',
        'has_legacy_key',
        'key_fingerprint',
        'token_count',
        'last_token_use',
      ])
      const admin = rows.find((row) => row.name === 'admin')!
      expect(admin).toMatchObject({
        has_legacy_key: 'true',
        key_fingerprint: fingerprintOf(ADMIN_KEY),
        state: 'active',
        sysadmin: 'true',
      })
      expect(rows.map((row) => row.name)).toContain(`'=hyperlink("http://x")`)
      expect(rows.map((row) => row.name)).toContain(`'+cmd`)
      expect(rows.map((row) => row.name)).toContain(HOSTILE_USERS[1]!.name)
      const used = rows.find((row) => row.last_token_use !== '')!
      expect(used.last_token_use).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/)

      // Never a key: not in stdout, stderr or the CSV.
      const keys = await site.query<{apikey: string}>('SELECT apikey FROM "user" WHERE apikey IS NOT NULL')
      for (const text of [run.stdout, run.stderr, csvText]) {
        for (const {apikey} of keys) expect(text).not.toContain(apikey)
      }
    })
  }

  it('connects with a SQLAlchemy-style password ("/", "#", "?" unescaped, or ?password=) and never shows it', async () => {
    const site = await seededSite('2.9', 60)
    // The test servers trust local connections: any password is accepted, so only parsing is tested.
    const withPassword = site.url.replace(/^(postgresql:\/\/[^:@/]+)(?::[^@]*)?@/, '$1:5432/s3c#ret?pw@')
    const withQuery = `${site.url}${site.url.includes('?') ? '&' : '?'}password=s3cret-query-pw`
    for (const url of [withPassword, withQuery]) {
      const run = await runCliJson<AuditResult>(['audit', '--database-url', url])
      expect(run.exitCode, run.stdout).toBe(EXIT_CODES.blockersFound)
      expect(run.json.result!.summary.users.total).toBe(60)
      expect(run.json.result!.database.url).toMatch(/\*\*\*/)
      const human = await runCli(['audit', '--database-url', url])
      for (const text of [run.stdout, run.stderr, human.stdout, human.stderr]) {
        expect(text).not.toContain('s3c#ret')
        expect(text).not.toContain('s3cret-query-pw')
      }
    }
  })

  it('fits its fix texts to the version and to the ckan.ini that version generated', async () => {
    const audit = async (version: CkanVersion, ini: string) => {
      const site = await seededSite(version, 120)
      const run = await runCliJson<AuditResult>(['audit', '--database-url', site.url, '--ckan-ini', ini])
      expect(run.json.result, run.stdout).toBeDefined()
      return run.json.result!
    }
    // 2.11's generator interpolates %(SECRET_KEY)s: the fix speaks of SECRET_KEY, never of Beaker.
    const on211 = await audit('2.11', join(FIXTURES, 'generated-2.11.ini'))
    expect(finding(on211, 'jwt-secret-interpolated')!.fix).toMatch(/%\(SECRET_KEY\)s: the tokens follow SECRET_KEY/)
    expect(JSON.stringify(finding(on211, 'jwt-secret-interpolated'))).not.toMatch(/beaker/i)
    expect(finding(on211, 'jwt-secrets-not-pinned')).toBeUndefined()
    expect(finding(on211, 'cookie-auth-in-api')).toBeDefined()
    // On a 2.10+ database the upgrade is behind: no "before the upgrade".
    const lockedOut = finding(on211, 'legacy-keys-without-token')!
    expect(lockedOut.title).toMatch(/no longer authenticate on CKAN 2\.11$/)
    expect(lockedOut.fix).not.toMatch(/before the upgrade/)
    expect(finding(on211, 'site-user-legacy-key')!.fix).toMatch(/^Clear it with ckan-migrate purge-keys/)

    const on210 = await audit('2.10', join(FIXTURES, 'generated-2.10.ini'))
    expect(finding(on210, 'jwt-secret-interpolated')!.fix).toMatch(/%\(beaker\.session\.secret\)s: 2\.11 drops Beaker/)
    expect(finding(on210, 'legacy-keys-without-token')!.title).toMatch(/no longer authenticate on CKAN 2\.10$/)

    // 2.9's generator pins both secrets literally; ckan.auth.enable_cookie_auth_in_api does not exist there.
    const on29 = await audit('2.9', join(FIXTURES, 'generated-2.9.ini'))
    for (const id of ['jwt-secrets-not-pinned', 'jwt-secret-interpolated', 'cookie-auth-in-api'])
      expect(finding(on29, id), id).toBeUndefined()
    expect(finding(on29, 'legacy-keys-without-token')!.fix).toMatch(
      /before the upgrade: CKAN 2\.10 ignores legacy keys/,
    )
    expect(finding(on29, 'create-default-api-keys')).toBeUndefined()

    // The setting keeps filling user.apikey on 2.10/2.11: say the keys are dead and how to stop them.
    const folder = await scratchFolder()
    const withKeys = join(folder, 'ckan.ini')
    await writeFile(
      withKeys,
      (await readFile(join(FIXTURES, 'generated-2.11.ini'), 'utf8'))
        .replace('ckan.auth.create_default_api_keys = false', 'ckan.auth.create_default_api_keys = true')
        .replace('ckan.plugins = activity', `ckan.plugins = activity\nckanext.xloader.api_token = ${ADMIN_KEY}`),
    )
    const withKeysResult = await audit('2.11', withKeys)
    // XLoader is not enabled, yet its setting holds a legacy key: a warning, not silence.
    expect(finding(withKeysResult, 'disabled-service-token-is-legacy-key')).toMatchObject({
      sample: ['ckanext.xloader.api_token (xloader not in ckan.plugins)'],
      severity: 'warning',
    })
    expect(JSON.stringify(withKeysResult)).not.toContain(ADMIN_KEY)
    const dead = finding(withKeysResult, 'create-default-api-keys')!
    const on29WithKeys = join(folder, 'ckan-2.9.ini')
    await writeFile(
      on29WithKeys,
      (await readFile(join(FIXTURES, 'generated-2.9.ini'), 'utf8')).replace(
        'ckan.auth.create_default_api_keys = false',
        'ckan.auth.create_default_api_keys = true',
      ),
    )
    expect(finding(await audit('2.9', on29WithKeys), 'create-default-api-keys')!.title).toBe(
      'ckan.auth.create_default_api_keys is true: new users still get legacy keys',
    )
    expect(dead.title).toBe(
      'ckan.auth.create_default_api_keys is true: CKAN 2.11 keeps giving every new user a dead legacy key',
    )
    expect(dead.fix).toMatch(
      /^Set ckan\.auth\.create_default_api_keys = false .* restart CKAN, then clear the keys it made with ckan-migrate purge-keys --all/,
    )
  })

  it('judges the target the admin names: 2.11 by default, and 2.12 adds the checks of its migrations 107 and 108', async () => {
    const site = await seededSite('2.11', 120)
    // Allowed by 2.10's index on (email, state); 2.12's migration 108 indexes lower(email).
    await site.query(`UPDATE "user" SET email = 'Case.Twin@Example.org' WHERE name = 'user-1'`)
    await site.query(`UPDATE "user" SET email = 'case.twin@example.org' WHERE name = 'user-2'`)
    await site.query(`UPDATE "user" SET state = 'active' WHERE name IN ('user-1', 'user-2')`)
    // History from before 2.9: a revision and a dataset activity without 2.9's "actor".
    await site.query(`INSERT INTO revision (id, "timestamp", state) VALUES ('rev-1', now(), 'active')`)
    await site.query(`INSERT INTO package (id, name, private, state) VALUES ('pkg-1', 'old-dataset', false, 'active')`)
    await site.query(
      `INSERT INTO activity (id, "timestamp", object_id, revision_id, activity_type, data)
       VALUES ('act-1', now(), 'pkg-1', 'rev-1', 'changed package', '{"package": {"id": "pkg-1"}}')`,
    )
    const audit = async (...extra: string[]) => {
      const run = await runCliJson<AuditResult>(['audit', '--database-url', site.url, ...extra])
      expect(run.json.result, run.stdout).toBeDefined()
      return run.json.result!
    }
    const byDefault = await audit()
    expect(byDefault.verdict.target).toBe('2.11')
    for (const id of ['case-duplicate-active-emails', 'activity-not-migrated', 'revision-tables-dropped'])
      expect(finding(byDefault, id), id).toBeUndefined()
    expect((await audit('--target', '2.10')).verdict.target).toBe('2.10')

    const for212 = await audit('--target', '2.12')
    expect(for212.verdict).toMatchObject({status: 'NOT READY', target: '2.12'})
    expect(finding(for212, 'case-duplicate-active-emails')).toMatchObject({
      count: 2,
      sample: ['user-1', 'user-2'],
      severity: 'blocker',
    })
    expect(finding(for212, 'case-duplicate-active-emails')!.fix).toContain('ckan db duplicate_emails')
    expect(finding(for212, 'activity-not-migrated')).toMatchObject({
      count: 1,
      details: {revisions: 1},
      severity: 'blocker',
    })
    expect(finding(for212, 'activity-not-migrated')!.fix).toContain('migrate_package_activity.py')
    const text = await runCli(['audit', '--database-url', site.url, '--target', '2.12'])
    expect(text.exitCode).toBe(10)
    expect(text.stdout).toMatch(/^CKAN audit: NOT READY for CKAN 2\.12 \(dev-v2\.12, not released yet\) \(/)

    // Once migrate_package_activity.py has run (the activity has its actor), only the drop is left, as an info.
    await site.query(`UPDATE activity SET data = '{"package": {"id": "pkg-1"}, "actor": "admin"}' WHERE id = 'act-1'`)
    const migrated = await audit('--target', '2.12')
    expect(finding(migrated, 'activity-not-migrated')).toBeUndefined()
    expect(finding(migrated, 'revision-tables-dropped')).toMatchObject({count: 1, severity: 'info'})

    const unknown = await runCli(['audit', '--database-url', site.url, '--target', '2.13'])
    expect(unknown.exitCode).toBe(2)
    expect(unknown.stderr + (unknown.error?.message ?? '')).toMatch(
      /Expected --target=2\.13 to be one of: 2\.10, 2\.11, 2\.12/,
    )
  })

  it('reads the plugins CKAN runs with: ckanext-envvars CKAN__PLUGINS can enable XLoader the ini leaves out', async () => {
    const site = await seededSite('2.9', 60)
    const folder = await scratchFolder()
    const ini = join(folder, 'ckan.ini')
    await writeFile(
      ini,
      (await readFile(join(FIXTURES, 'generated-2.9.ini'), 'utf8')).replace(
        /^ckan\.plugins = .*$/m,
        `ckan.plugins = stats envvars\nckanext.xloader.api_token = ${ADMIN_KEY}`,
      ),
    )
    const plain = await runCliJson<AuditResult>(['audit', '--database-url', site.url, '--ckan-ini', ini])
    expect(finding(plain.json.result, 'disabled-service-token-is-legacy-key')).toBeDefined()
    expect(finding(plain.json.result, 'service-token-is-legacy-key')).toBeUndefined()
    process.env.CKAN__PLUGINS = 'stats xloader envvars'
    try {
      const enabled = await runCliJson<AuditResult>(['audit', '--database-url', site.url, '--ckan-ini', ini])
      expect(finding(enabled.json.result, 'service-token-is-legacy-key')).toMatchObject({
        sample: ['xloader (ckanext.xloader.api_token)'],
        severity: 'blocker',
      })
      expect(finding(enabled.json.result, 'disabled-service-token-is-legacy-key')).toBeUndefined()
    } finally {
      delete process.env.CKAN__PLUGINS
    }
  })

  it('says READY (exit 0) once the keys are replaced, the emails fixed and the config pinned', async () => {
    const site = await seededSite('2.9', 300)
    await site.query(`UPDATE "user" SET apikey = NULL WHERE name <> 'default'`)
    await site.query(`UPDATE "user" SET email = 'fixed-' || id || '@example.org' WHERE email LIKE 'shared-%'`)
    const run = await runCli(['audit', '--database-url', site.url, '--ckan-ini', join(FIXTURES, 'ready.ini')])
    expect(run.exitCode).toBe(0)
    expect(run.stdout).toMatch(/^CKAN audit: READY for CKAN 2\.11 \(0 blockers/)
    expect(run.stdout).toContain('READY: no blockers.')
    expect(run.stdout).toContain('WARNING  expire-api-token-enabled')
    // The human summary escapes control characters in names instead of printing them.
    expect(run.stdout).not.toContain('\t')
  })

  it('reads the database from sqlalchemy.url through a use = config: chain, and CKAN_SQLALCHEMY_URL overrides it', async () => {
    const site = await seededSite('2.10', 100)
    const folder = await scratchFolder()
    await copyFile(join(FIXTURES, 'ready.ini'), join(folder, 'base.ini'))
    const base = (await readFile(join(folder, 'base.ini'), 'utf8')).replace(
      '[app:main]\n',
      `[app:main]\nsqlalchemy.url = ${site.url.replaceAll('%', '%%')}\n`,
    )
    await writeFile(join(folder, 'base.ini'), base)
    await writeFile(join(folder, 'ckan.ini'), '[app:main]\nuse = config:base.ini\n')
    const fromIni = await runCliJson<AuditResult>(['audit', '--ckan-ini', join(folder, 'ckan.ini')])
    expect(fromIni.json.result!.database.source).toBe(`sqlalchemy.url in ${join(folder, 'base.ini')}`)
    expect(fromIni.json.result!.ckan.version).toBe('2.10')

    await writeFile(
      join(folder, 'ckan.ini'),
      '[app:main]\nuse = config:base.ini\nsqlalchemy.url = postgresql://ckan:secret@127.0.0.1:1/nowhere\n',
    )
    process.env.CKAN_SQLALCHEMY_URL = site.url
    onTestFinished(() => {
      delete process.env.CKAN_SQLALCHEMY_URL
    })
    const fromEnv = await runCliJson<AuditResult>(['audit', '--ckan-ini', join(folder, 'ckan.ini')])
    expect(fromEnv.json.result!.database.source).toBe('CKAN_SQLALCHEMY_URL')
    expect(finding(fromEnv.json.result, 'env-overrides')!.sample).toContain('CKAN_SQLALCHEMY_URL → sqlalchemy.url')
  })

  it('accepts a postgres:// URL with a warning that CKAN 2.10 rejects it', async () => {
    const site = await seededSite('2.9', 50)
    const run = await runCliJson<AuditResult>([
      'audit',
      '--database-url',
      site.url.replace(/^postgresql:/, 'postgres:'),
    ])
    expect(run.json.status).toBe(10)
    expect(run.json.warnings.join('\n')).toMatch(/postgres:\/\/, which CKAN 2\.10\+ rejects/)
  })

  it('reports a pre-2.9 database (no api_token table) and an unknown alembic head as findings', async () => {
    const site = await seededSite('2.9', 50)
    await site.query(`UPDATE alembic_version SET version_num = '0123456789ab'`)
    const unknown = await runCliJson<AuditResult>(['audit', '--database-url', site.url])
    expect(finding(unknown.json.result, 'unknown-alembic-head')).toMatchObject({
      sample: ['0123456789ab'],
      severity: 'warning',
    })
    expect(unknown.json.result!.ckan.version).toBeNull()

    await site.query('DROP TABLE api_token')
    const old = await runCliJson<AuditResult>(['audit', '--database-url', site.url])
    expect(old.exitCode).toBe(10)
    expect(finding(old.json.result, 'pre-2.9')).toMatchObject({severity: 'blocker'})
    expect(old.json.result!.summary.apiTokens.total).toBe(0)
  })

  it('counts the keys an XLoader jobs database still holds, in SQLite and in PostgreSQL', async () => {
    const site = await seededSite('2.9', 50)
    const folder = await scratchFolder()
    const {DatabaseSync} = await import('node:sqlite')
    const jobs = new DatabaseSync(join(folder, 'jobs.db'))
    jobs.exec(
      "CREATE TABLE jobs (job_id TEXT, api_key TEXT); INSERT INTO jobs VALUES ('a', 'k1'), ('b', NULL), ('c', 'k2')",
    )
    jobs.close()
    const ini = (uri: string) =>
      `[app:main]\nckan.plugins = xloader\nckanext.xloader.api_token = eyJhbGciOiJIUzI1NiJ9.e30.c2ln\napi_token.jwt.encode.secret = string:x\napi_token.jwt.decode.secret = string:x\nckanext.xloader.jobs_db.uri = ${uri}\n`
    await writeFile(join(folder, 'sqlite.ini'), ini('sqlite:///jobs.db'))
    const sqlite = await runCliJson<AuditResult>([
      'audit',
      '--database-url',
      site.url,
      '--ckan-ini',
      join(folder, 'sqlite.ini'),
    ])
    expect(finding(sqlite.json.result, 'xloader-jobs-hold-keys')).toMatchObject({count: 2, severity: 'warning'})

    // XLoader makes its jobs table on its first job: before that, the store holds no key.
    await writeFile(join(folder, 'pg.ini'), ini(site.url.replaceAll('%', '%%')))
    const fresh = await runCliJson<AuditResult>([
      'audit',
      '--database-url',
      site.url,
      '--ckan-ini',
      join(folder, 'pg.ini'),
    ])
    expect(fresh.json.result!.findings.map((item) => item.id)).not.toContain('xloader-jobs-db-unreachable')
    expect(finding(fresh.json.result, 'xloader-jobs-hold-keys')).toBeUndefined()

    await site.query('CREATE TABLE jobs (job_id text, api_key text)')
    await site.query(`INSERT INTO jobs VALUES ('a', 'k1'), ('b', NULL)`)
    const postgres = await runCliJson<AuditResult>([
      'audit',
      '--database-url',
      site.url,
      '--ckan-ini',
      join(folder, 'pg.ini'),
    ])
    expect(finding(postgres.json.result, 'xloader-jobs-hold-keys')).toMatchObject({count: 1})
    expect(finding(postgres.json.result, 'service-token-missing')).toBeUndefined()
  })

  it('checks the running version and plugins through status_show when --ckan-url is given', async () => {
    const site = await seededSite('2.10', 50)
    const server = createServer((request, response) => {
      response.setHeader('Content-Type', 'application/json;charset=utf-8')
      response.end(
        JSON.stringify({
          help: 'http://localhost/api/3/action/help_show?name=status_show',
          result: {ckan_version: '2.9.11', extensions: ['stats', 'expire_api_token'], site_url: 'http://localhost'},
          success: request.url?.startsWith('/api/3/action/status_show') ?? false,
        }),
      )
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    onTestFinished(() => new Promise<void>((resolve) => server.close(() => resolve())))
    const {port} = server.address() as {port: number}
    const run = await runCliJson<AuditResult>([
      'audit',
      '--database-url',
      site.url,
      '--ckan-url',
      `http://127.0.0.1:${port}`,
    ])
    expect(run.json.result!.ckan.status).toMatchObject({ckanVersion: '2.9.11'})
    expect(finding(run.json.result, 'ckan-version-mismatch')).toMatchObject({severity: 'warning'})
    expect(finding(run.json.result, 'expire-api-token-enabled')).toBeDefined()
    expect(finding(run.json.result, 'config-not-checked')).toBeDefined()

    const down = await runCli(['audit', '--database-url', site.url, '--ckan-url', 'http://127.0.0.1:1'])
    expect(down.exitCode).toBe(3)
    expectOneLineError(down)
  })

  it('works with a role that may only SELECT', async (context) => {
    skipWithoutRealPostgres(context)
    const site = await seededSite('2.9', 200)
    const role = `audit_ro_${randomBytes(4).toString('hex')}`
    const database = new URL(site.url).pathname.slice(1)
    await site.query(`CREATE ROLE ${role} LOGIN`)
    onTestFinished(async () => {
      await queryOnce(REAL_POSTGRES_URL!, `DROP OWNED BY ${role}`).catch(() => {})
      await queryOnce(REAL_POSTGRES_URL!, `DROP ROLE IF EXISTS ${role}`).catch(() => {})
    })
    await site.query(`GRANT CONNECT ON DATABASE ${database} TO ${role}`)
    await site.query(`GRANT USAGE ON SCHEMA public TO ${role}`)
    await site.query(`GRANT SELECT ON ALL TABLES IN SCHEMA public TO ${role}`)
    const url = new URL(site.url)
    url.username = role
    const owner = await runCliJson<AuditResult>(['audit', '--database-url', site.url])
    const readOnly = await runCliJson<AuditResult>(['audit', '--database-url', url.href])
    expect(readOnly.exitCode).toBe(10)
    expect(readOnly.json.result!.findings).toEqual(owner.json.result!.findings)

    await site.query(`REVOKE SELECT ON api_token FROM ${role}`)
    const denied = await runCliJson<AuditResult>(['audit', '--database-url', url.href])
    expect(denied.json).toMatchObject({error: {code: 'databaseUnreachable'}, status: 8})
    expect(denied.json.error!.suggestion).toMatch(/GRANT SELECT/)
  })

  describe('bad input: one line, a documented exit code, no stack trace', () => {
    it('exits 8 when the database cannot be reached', async () => {
      const run = await runCli(['audit', '--database-url', 'postgresql://ckan:hunter2@127.0.0.1:1/ckan'])
      expect(run.exitCode).toBe(8)
      expect(run.error?.message).toBe(
        'Cannot reach the CKAN database at postgresql://ckan:***@127.0.0.1:1/ckan: connection refused',
      )
      expect(`${run.stdout}${run.stderr}${run.error?.message}`).not.toContain('hunter2')
      expectOneLineError(run)
    })

    it('exits 8 when PostgreSQL refuses the login', async (context) => {
      skipWithoutRealPostgres(context)
      const url = new URL(REAL_POSTGRES_URL!)
      url.username = `nobody_${randomBytes(4).toString('hex')}`
      url.password = 'wrong'
      const run = await runCliJson(['audit', '--database-url', url.href])
      expect(run.json).toMatchObject({error: {code: 'databaseUnreachable'}, status: 8})
      expect(run.json.error!.message).toMatch(/refused the login/)
      expect(run.stdout).not.toContain(':wrong@')
    })

    it("exits 9 for a database that is not CKAN's", async () => {
      const database = await createTestDatabase()
      const run = await runCli(['audit', '--database-url', database.url])
      expect(run.exitCode).toBe(9)
      expect(run.error?.message).toMatch(/is not a CKAN database: it has no "user" table$/)
      expectOneLineError(run)
    })

    it('exits 7 for a missing, malformed or badly interpolated ckan.ini, and a database URL that is not PostgreSQL', async () => {
      const cases: Array<[string[], RegExp]> = [
        [['--ckan-ini', join(FIXTURES, 'does-not-exist.ini')], /does-not-exist\.ini does not exist$/],
        [['--ckan-ini', join(FIXTURES, 'malformed.ini')], /malformed\.ini line 3 is not a setting/],
        [['--ckan-ini', join(FIXTURES, 'ready.ini')], /has no sqlalchemy\.url/],
        [['--database-url', 'mysql://ckan@db/ckan'], /scheme mysql:\/\/ is not PostgreSQL/],
        [[], /^No database given$/],
      ]
      for (const [args, message] of cases) {
        const run = await runCli(['audit', ...args])
        expect(run.exitCode, args.join(' ')).toBe(7)
        expect(run.error?.message).toMatch(message)
        expect(run.error?.message).not.toContain('\n')
        expectOneLineError(run)
      }
    })

    it('exits 7 for a broken %(...)s interpolation anywhere in [app:main]', async () => {
      const site = await seededSite('2.9', 20)
      const run = await runCliJson([
        'audit',
        '--database-url',
        site.url,
        '--ckan-ini',
        join(FIXTURES, 'broken-interpolation.ini'),
      ])
      expect(run.json).toMatchObject({error: {code: 'badInput'}, status: 7})
      expect(run.json.error!.message).toMatch(
        /api_token\.jwt\.encode\.secret cannot be interpolated: it refers to %\(beaker\.session\.secrte\)s/,
      )
    })

    it('exits 7 for a ckan.ini this user may not read', async (context) => {
      skipAsRoot(context)
      const folder = await scratchFolder()
      await writeFile(join(folder, 'ckan.ini'), '[app:main]\n', {mode: 0o000})
      const run = await runCli(['audit', '--ckan-ini', join(folder, 'ckan.ini')])
      expect(run.exitCode).toBe(7)
      expect(run.error?.message).toMatch(/cannot be read \(permission denied\)/)
    })
  })
})
