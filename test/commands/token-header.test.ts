import {readFile, rm} from 'node:fs/promises'
import {join} from 'node:path'
import pg from 'pg'
import {describe, expect, it} from 'vitest'

import {upgradeSandboxDatabase} from '../../src/sandbox/sandbox-site.js'
import type {RevokeResult} from '../../src/lib/workflows/revoke.js'
import type {VerifyResult} from '../../src/lib/workflows/verify.js'
import {issueTokensArgs, querySite as sql, tempDir} from '../helpers/site-commands.js'
import {runCli, runCliJson} from '../helpers/run-cli.js'
import {startTestSite, type TestSite} from '../helpers/test-site.js'

/**
 * The header API credentials go in (issue 15.1): CKAN 2.11 reads only apitoken_header_name, and
 * when that is unset, the value of its legacy key apikey_header_name
 * (ckan-2.11.5:ckan/config/config_declaration.yaml L402-409): an ini carried over from 2.10 with
 * `apikey_header_name = X-CKAN-API-Key` makes X-CKAN-API-Key the only header that works.
 */

const CARRIED_OVER = {apikey_header_name: 'X-CKAN-API-Key', apitoken_header_name: null}

async function journal(out: string): Promise<Array<Record<string, unknown>>> {
  return (await readFile(join(out, 'journal.jsonl'), 'utf8'))
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as Record<string, unknown>)
}

async function issue(site: TestSite, out: string): Promise<void> {
  const issued = await runCli(issueTokensArgs(site, out, '--limit', '4'))
  expect(issued.exitCode, issued.stderr).toBe(0)
}

async function upgradeInPlace(site: TestSite, to: '2.10' | '2.11'): Promise<void> {
  const client = new pg.Client({connectionString: site.databaseUrl})
  await client.connect()
  try {
    await upgradeSandboxDatabase(client, to)
  } finally {
    await client.end()
  }
  await site.emulator.setVersion(to)
}

describe('the token header', () => {
  it('2.11 with apikey_header_name = X-CKAN-API-Key: verify and revoke send the tokens where CKAN reads them', async () => {
    const site = await startTestSite({settings: CARRIED_OVER, users: 20, version: '2.11'})
    const out = join(await tempDir(), 'run')
    await issue(site, out)
    // Later commands on the run use the header it recorded, with or without the ini.
    const verified = await runCliJson<VerifyResult>(['verify', '--out', out])
    expect(verified.exitCode, verified.stdout).toBe(0)
    expect(verified.json.result).toMatchObject({counts: {failed: 0, ok: 4, tokens: 4}, headerName: 'X-CKAN-API-Key'})
    expect(JSON.parse(await readFile(join(out, 'token-header.json'), 'utf8'))).toMatchObject({
      name: 'X-CKAN-API-Key',
    })
    expect((await journal(out)).find((entry) => entry.kind === 'token-header')).toMatchObject({
      command: 'issue-tokens',
      header: 'X-CKAN-API-Key',
    })

    const withIni = await runCli(['verify', '--out', out, '--ckan-ini', site.ckanIni])
    expect(withIni.exitCode, withIni.stdout).toBe(0)
    expect(withIni.stdout).toContain('4 of 4 tokens work')

    // A run folder without the record (an older ckan-migrate's): a probe finds the header.
    await rm(join(out, 'token-header.json'), {force: true})
    const probed = await runCliJson<VerifyResult>(['verify', '--out', out])
    expect(probed.exitCode, probed.stdout).toBe(0)
    expect(probed.json.result?.counts).toMatchObject({ok: 4})

    // revoke takes --ckan-ini like the other commands, and the sysadmin credential is accepted.
    const dry = await runCliJson<RevokeResult>([
      'revoke',
      '--out',
      out,
      '--api-key-file',
      site.apiKeyFile,
      '--ckan-ini',
      site.ckanIni,
      '--dry-run',
    ])
    expect(dry.exitCode, dry.stderr).toBe(0)
    expect(dry.json.result?.counts).toMatchObject({planned: 4})
    await rm(join(out, 'token-header.json'), {force: true})
    const revoked = await runCliJson<RevokeResult>(['revoke', '--out', out, '--api-key-file', site.apiKeyFile])
    expect(revoked.exitCode, revoked.stderr).toBe(0)
    expect(revoked.json.result?.counts).toMatchObject({failed: 0, revoked: 4})
    const runId = JSON.parse(await readFile(join(out, 'run.json'), 'utf8')).runId as string
    expect(await sql(site, `SELECT id FROM api_token WHERE name LIKE '%' || $1 || '%'`, [runId])).toHaveLength(0)
  }, 180_000)

  it('2.11 with apikey_header_name = X-CKAN-API-Key: revoke (the rollback) accepts the sysadmin credential', async () => {
    const site = await startTestSite({settings: CARRIED_OVER, users: 20, version: '2.11'})
    const out = join(await tempDir(), 'run')
    await issue(site, out)
    const revoked = await runCliJson<RevokeResult>(['revoke', '--out', out, '--api-key-file', site.apiKeyFile])
    expect(revoked.exitCode, revoked.stdout).toBe(0)
    expect(revoked.json.result?.counts).toMatchObject({failed: 0, revoked: 4})
  }, 180_000)

  it('2.11 with apikey_header_name = X-CKAN-API-Key: rotate works through the header the site reads', async () => {
    const site = await startTestSite({settings: CARRIED_OVER, users: 20, version: '2.11'})
    const out = join(await tempDir(), 'run')
    await issue(site, out)
    await rm(join(out, 'token-header.json'), {force: true})
    const rotated = await runCliJson<{counts: Record<string, number>}>([
      'rotate',
      '--out',
      out,
      '--api-key-file',
      site.apiKeyFile,
      '--all',
    ])
    expect(rotated.exitCode, rotated.stdout).toBe(0)
    expect(rotated.json.result?.counts.rotated).toBe(4)
    expect(JSON.parse(await readFile(join(out, 'token-header.json'), 'utf8'))).toMatchObject({name: 'X-CKAN-API-Key'})
  }, 180_000)

  it('2.10 with its generated ini: verify and revoke (with --ckan-ini) work', async () => {
    const site = await startTestSite({settings: {apikey_header_name: 'X-CKAN-API-Key'}, users: 20, version: '2.10'})
    const out = join(await tempDir(), 'run')
    await issue(site, out)
    const verified = await runCliJson<VerifyResult>(['verify', '--out', out, '--ckan-ini', site.ckanIni])
    expect(verified.exitCode, verified.stdout).toBe(0)
    expect(verified.json.result?.counts).toMatchObject({failed: 0, ok: 4})
    const revoked = await runCliJson<RevokeResult>([
      'revoke',
      '--out',
      out,
      '--api-key-file',
      site.apiKeyFile,
      '--ckan-ini',
      site.ckanIni,
    ])
    expect(revoked.exitCode, revoked.stderr).toBe(0)
    expect(revoked.json.result?.counts).toMatchObject({failed: 0, revoked: 4})
  }, 180_000)

  it('issued on 2.10, upgraded to 2.11 keeping the ini: verify finds the header 2.11 reads and says so', async () => {
    const site = await startTestSite({settings: {apikey_header_name: 'X-CKAN-API-Key'}, users: 20, version: '2.10'})
    const out = join(await tempDir(), 'run')
    await issue(site, out)
    await upgradeInPlace(site, '2.11')

    const verified = await runCliJson<VerifyResult>(['verify', '--out', out])
    expect(verified.exitCode, verified.stdout).toBe(0)
    expect(verified.json.result).toMatchObject({counts: {failed: 0, ok: 4}, headerName: 'X-CKAN-API-Key'})
    expect(verified.json.warnings.join('\n')).toContain('accepted it in X-CKAN-API-Key')
    // With the ini, the header is known before anything is sent: no warning.
    const withIni = await runCliJson<VerifyResult>(['verify', '--out', out, '--ckan-ini', site.ckanIni])
    expect(withIni.exitCode).toBe(0)
    expect(withIni.json.warnings).toEqual([])

    // An explicit --header-name CKAN does not read is refused, naming the header it does read.
    const wrong = await runCli(['verify', '--out', out, '--header-name', 'Authorization'])
    expect(wrong.exitCode).toBe(4)
    expect(wrong.error?.message).toContain('accepted it in X-CKAN-API-Key')

    // The first token of the run dead, nothing recorded: the next token settles the header.
    const first = JSON.parse((await readFile(join(out, 'tokens.jsonl'), 'utf8')).split('\n')[0]!) as {jti: string}
    await sql(site, 'DELETE FROM api_token WHERE id = $1', [first.jti])
    await rm(join(out, 'token-header.json'), {force: true})
    const oneDead = await runCliJson<VerifyResult>(['verify', '--out', out])
    expect(oneDead.exitCode).toBe(6)
    expect(oneDead.json.result).toMatchObject({counts: {failed: 1, ok: 3}, headerName: 'X-CKAN-API-Key'})

    const revoked = await runCliJson<RevokeResult>(['revoke', '--out', out, '--api-key-file', site.apiKeyFile])
    expect(revoked.exitCode, revoked.stderr).toBe(0)
    expect(revoked.json.result?.counts).toMatchObject({failed: 0, revoked: 4})
  }, 180_000)

  it('every token refused through every header: verify says the header is not the cause', async () => {
    const site = await startTestSite({users: 20, version: '2.11'})
    const out = join(await tempDir(), 'run')
    await issue(site, out)
    const runId = JSON.parse(await readFile(join(out, 'run.json'), 'utf8')).runId as string
    await sql(site, `DELETE FROM api_token WHERE name LIKE '%' || $1 || '%'`, [runId])
    const verified = await runCliJson<VerifyResult>(['verify', '--out', out])
    expect(verified.exitCode).toBe(6)
    expect(verified.json.result?.counts).toMatchObject({ok: 0, tokens: 4})
    expect(verified.json.warnings.join('\n')).toContain(
      'No token was accepted through Authorization or X-CKAN-API-Key (the first 3 were tried in each), so the header is not what fails',
    )
  }, 180_000)
})
