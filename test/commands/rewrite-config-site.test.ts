import {mkdtemp, readdir, readFile, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import pg from 'pg'
import {describe, expect, it, onTestFinished} from 'vitest'

import {CkanApiClient} from '../../src/lib/site/ckan-api-client.js'
import {readCkanIni} from '../../src/lib/site/ckan-ini.js'
import {Secret} from '../../src/lib/secret.js'
import type {RewriteConfigResult} from '../../src/lib/workflows/rewrite-config.js'
import {runCli, runCliJson} from '../helpers/run-cli.js'
import {rewriteConfigArgs} from '../helpers/site-commands.js'
import {startTestSite, type TestSite} from '../helpers/test-site.js'

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'ckan-migrate-rewrite-'))
  onTestFinished(() => rm(dir, {force: true, recursive: true}))
  return dir
}

async function tokenCount(site: TestSite): Promise<number> {
  const client = new pg.Client({connectionString: site.databaseUrl})
  await client.connect()
  try {
    return Number((await client.query<{count: string}>('SELECT count(*) FROM api_token')).rows[0]!.count)
  } finally {
    await client.end()
  }
}

/** api_token_list for the site user succeeds only for that user or a sysadmin: proof the token authenticates. */
async function authenticatesAs(site: TestSite, token: string): Promise<boolean> {
  const client = new CkanApiClient({ckanUrl: new URL(site.ckanUrl), credential: new Secret(token), retryLimit: 0})
  try {
    await client.listApiTokens(site.siteUserName)
    return true
  } catch {
    return false
  } finally {
    await client.close()
  }
}

const args = rewriteConfigArgs

describe('rewrite-config against the CKAN emulator', () => {
  it('creates a working token per enabled service for the site user, pins the secret, and a rerun changes nothing', async () => {
    const site = await startTestSite({apiTokenLines: false, users: 6, version: '2.9'})
    const out = join(await tempDir(), 'run')
    const tokensBefore = await tokenCount(site)
    const iniBefore = await readFile(site.ckanIni, 'utf8')

    const dry = await runCliJson<RewriteConfigResult>(args(site, out, '--dry-run'))
    expect(dry.exitCode, dry.stdout).toBe(0)
    expect(dry.json.result!.services.map((service) => [service.service, service.tokenSource, service.user])).toEqual([
      ['datapusher', 'would-create', site.siteUserName],
      ['xloader', 'would-create', site.siteUserName],
    ])
    expect(await tokenCount(site)).toBe(tokensBefore)
    expect(await readFile(site.ckanIni, 'utf8')).toBe(iniBefore)
    await expect(readdir(out)).rejects.toThrow(/ENOENT/)

    const run = await runCliJson<RewriteConfigResult>(args(site, out))
    expect(run.exitCode, run.stdout).toBe(0)
    expect(run.json.result!.services.map((service) => service.tokenSource)).toEqual(['created', 'created'])
    expect(run.json.result!.secretPinning?.keys).toEqual(['api_token.jwt.encode.secret', 'api_token.jwt.decode.secret'])
    expect(await tokenCount(site)).toBe(tokensBefore + 2)

    const ini = await readCkanIni(site.ckanIni)
    const xloader = ini.get('ckanext.xloader.api_token')!
    const datapusher = ini.get('ckan.datapusher.api_token')!
    expect(xloader).not.toBe(datapusher)
    expect(await authenticatesAs(site, xloader)).toBe(true)
    expect(await authenticatesAs(site, datapusher)).toBe(true)
    expect(await authenticatesAs(site, `${xloader.slice(0, -4)}AAAA`)).toBe(false)
    expect(ini.get('api_token.jwt.encode.secret')).toBe(`string:${ini.get('beaker.session.secret')}`)

    // The run folder holds both tokens for revoke, and the journal says which file changed (no values).
    const stored = (await readFile(join(out, 'tokens.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line))
    expect(stored.map((token) => [token.service, token.source, token.userName])).toEqual([
      ['datapusher', 'rewrite-config', site.siteUserName],
      ['xloader', 'rewrite-config', site.siteUserName],
    ])
    const journal = await readFile(join(out, 'journal.jsonl'), 'utf8')
    expect(journal).toContain('"kind":"config-rewritten"')
    for (const secret of [xloader, datapusher, ini.get('beaker.session.secret')!]) {
      expect(journal).not.toContain(secret)
      expect(run.stdout).not.toContain(secret)
      expect(run.stderr).not.toContain(secret)
    }

    const again = await runCli(args(site, out))
    expect(again.exitCode).toBe(0)
    expect(again.stdout).toContain('reused')
    expect(again.stdout).toContain('Nothing to change')
    expect(await tokenCount(site)).toBe(tokensBefore + 2)
    expect((await readdir(site.dir)).filter((name) => name.endsWith('.bak'))).toHaveLength(1)
  })

  it('on 2.10 keeps the tokens already configured and replaces the interpolated JWT secret by its literal value', async () => {
    const site = await startTestSite({users: 4, version: '2.10'})
    const out = join(await tempDir(), 'run')
    const before = await readCkanIni(site.ckanIni, {caseRule: 'preserve'})
    expect(before.raw('api_token.jwt.encode.secret')).toBe('string:%(beaker.session.secret)s')
    const run = await runCliJson<RewriteConfigResult>(args(site, out))
    expect(run.exitCode, run.stdout).toBe(0)
    expect(run.json.result!.services.map((service) => service.tokenSource)).toEqual(['kept', 'kept'])
    const after = await readCkanIni(site.ckanIni, {caseRule: 'preserve'})
    expect(after.raw('api_token.jwt.encode.secret')).toBe(
      `string:${before.get('beaker.session.secret')!.replaceAll('%', '%%')}`,
    )
    expect(after.raw('api_token.jwt.decode.secret')).toBe(after.raw('api_token.jwt.encode.secret'))
    expect(await authenticatesAs(site, after.get('ckanext.xloader.api_token')!)).toBe(true)
  })

  it('replaces a legacy key in the token setting of a plugin that is not enabled, with a warning', async () => {
    const site = await startTestSite({apiTokenLines: false, users: 4, version: '2.9', xloader: false})
    const legacyKey = '0f0e2c3a-1b2c-4d5e-8f90-0123456789ab'
    const text = await readFile(site.ckanIni, 'utf8')
    expect(text).not.toMatch(/^ckan\.plugins = .*xloader/m)
    await writeFile(
      site.ckanIni,
      text.replace(/^(ckan\.plugins = .*)$/m, `$1\nckanext.xloader.api_token = ${legacyKey}`),
    )
    const out = join(await tempDir(), 'run')
    const run = await runCliJson<RewriteConfigResult>(args(site, out))
    expect(run.exitCode, run.stdout).toBe(0)
    expect(run.json.result!.services.map((service) => [service.service, service.tokenSource])).toEqual([
      ['datapusher', 'created'],
      ['xloader', 'created'],
    ])
    expect(run.json.warnings.join('\n')).toContain(
      'ckanext.xloader.api_token holds a legacy key though xloader is not in ckan.plugins; it gets a token too',
    )
    const after = await readCkanIni(site.ckanIni, {caseRule: 'lowercase'})
    expect(after.get('ckanext.xloader.api_token')).not.toBe(legacyKey)
    expect(await authenticatesAs(site, after.get('ckanext.xloader.api_token')!)).toBe(true)
    expect(run.stdout + run.stderr).not.toContain(legacyKey)
  })

  it('gives created tokens --token-lifetime-days when expire_api_token makes a lifetime required', async () => {
    const site = await startTestSite({expireApiToken: true, users: 4, version: '2.9', xloader: false})
    const out = join(await tempDir(), 'run')
    const run = await runCliJson<RewriteConfigResult>(args(site, out, '--token-lifetime-days', '30'))
    expect(run.exitCode, run.stdout).toBe(0)
    expect(run.json.result!.services.map((service) => [service.service, service.tokenSource])).toEqual([
      ['datapusher', 'created'],
    ])
    const [stored] = (await readFile(join(out, 'tokens.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line))
    const days = (Date.parse(stored.expiresAt) - Date.now()) / 86_400_000
    expect(days).toBeGreaterThan(29)
    expect(days).toBeLessThan(31)
  })

  it('revokes a service token whose create never answered before a rerun creates it again', async () => {
    const site = await startTestSite({apiTokenLines: false, users: 4, version: '2.9'})
    const out = join(await tempDir(), 'run')
    // CKAN commits the token, then the answer never comes: the outcome is unknown to us.
    site.emulator.setFaults({actions: ['api_token_create'], hangAfterCommit: 1})
    const hung = await runCli(args(site, out, '--timeout', '1'))
    expect(hung.exitCode).not.toBe(0)
    const runId = JSON.parse(await readFile(join(out, 'run.json'), 'utf8')).runId as string
    const ofRun = async () => {
      const client = new pg.Client({connectionString: site.databaseUrl})
      await client.connect()
      try {
        return (
          await client.query<{id: string}>(`SELECT id FROM api_token WHERE name LIKE '%' || $1 || '%'`, [runId])
        ).rows.map((row) => row.id)
      } finally {
        await client.end()
      }
    }
    const [orphan] = await ofRun()
    expect(orphan).toBeDefined()

    site.emulator.setFaults({})
    const rerun = await runCli(args(site, out))
    expect(rerun.exitCode, rerun.stdout + rerun.stderr).toBe(0)
    // The token we never received is gone; the ones that remain are exactly those in the store (revoke --out finds them).
    const stored = (await readFile(join(out, 'tokens.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as {jti: string})
    const remaining = await ofRun()
    expect(remaining).not.toContain(orphan)
    expect(remaining.sort()).toEqual(stored.map((token) => token.jti).sort())
    expect(remaining).toHaveLength(2)
    const journal = await readFile(join(out, 'journal.jsonl'), 'utf8')
    expect(journal).toContain('"kind":"token-orphan-revoked"')
    expect(journal).not.toContain(orphan!)
  })

  it('ends with a one-line error (exit 4) when the service user does not exist, creating nothing', async () => {
    const site = await startTestSite({users: 4, version: '2.9'})
    const out = join(await tempDir(), 'run')
    const tokensBefore = await tokenCount(site)
    const run = await runCliJson(args(site, out, '--service-user', 'no-such-service-account'))
    expect(run.exitCode).toBe(4)
    expect(run.json.error!.message).toBe('The service user no-such-service-account does not exist on CKAN')
    expect(run.json.error!.suggestion).toContain('--service-user')
    expect(await tokenCount(site)).toBe(tokensBefore)
  })
})
