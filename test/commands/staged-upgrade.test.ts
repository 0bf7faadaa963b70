import {readFile} from 'node:fs/promises'
import {join} from 'node:path'
import pg from 'pg'
import {describe, expect, it, onTestFinished} from 'vitest'

import {startCkanEmulator} from '../../src/sandbox/ckan-emulator.js'
import {upgradeSandboxDatabase} from '../../src/sandbox/sandbox-site.js'
import type {RevokeResult} from '../../src/lib/workflows/revoke.js'
import type {VerifyResult} from '../../src/lib/workflows/verify.js'
import {issueTokensArgs, tempDir} from '../helpers/site-commands.js'
import {runCli, runCliJson} from '../helpers/run-cli.js'
import {startTestSite} from '../helpers/test-site.js'

async function journal(out: string): Promise<Array<Record<string, unknown>>> {
  return (await readFile(join(out, 'journal.jsonl'), 'utf8'))
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as Record<string, unknown>)
}

/**
 * A staged upgrade (issue 15.3): tokens issued on the 2.10 site, its database upgraded to 2.11 and
 * served at another port; the run folder is tied to the first URL.
 */
describe('a run on an upgraded copy at another URL', () => {
  it('verify and revoke refuse the other URL unless --allow-other-url, which checks the site and journals it', async () => {
    const site = await startTestSite({users: 20, version: '2.10'})
    const out = join(await tempDir(), 'run')
    expect((await runCli(issueTokensArgs(site, out, '--limit', '4'))).exitCode).toBe(0)

    const client = new pg.Client({connectionString: site.databaseUrl})
    await client.connect()
    try {
      await upgradeSandboxDatabase(client, '2.11')
    } finally {
      await client.end()
    }
    const upgraded = await startCkanEmulator({ckanIni: site.ckanIni, databaseUrl: site.databaseUrl, version: '2.11'})
    onTestFinished(() => upgraded.stop())

    const refused = await runCliJson(['verify', '--out', out, '--ckan-url', upgraded.url])
    expect(refused.exitCode).toBe(5)
    expect(refused.json.error?.message).toContain('belongs to another site')
    expect(refused.json.error?.suggestion).toContain('pass --allow-other-url')

    const verified = await runCliJson<VerifyResult>([
      'verify',
      '--out',
      out,
      '--ckan-url',
      upgraded.url,
      '--allow-other-url',
    ])
    expect(verified.exitCode, verified.stdout).toBe(0)
    expect(verified.json.result?.counts).toMatchObject({failed: 0, ok: 4, tokens: 4})
    const allowed = (await journal(out)).filter((entry) => entry.kind === 'site-url-allowed')
    expect(allowed).toHaveLength(1)
    expect(allowed[0]).toMatchObject({
      command: 'verify',
      ckanUrl: upgraded.url.replace(/\/+$/, ''),
      recordedUrl: site.ckanUrl,
    })

    const revoked = await runCliJson<RevokeResult>([
      'revoke',
      '--out',
      out,
      '--api-key-file',
      site.apiKeyFile,
      '--ckan-url',
      upgraded.url,
      '--allow-other-url',
    ])
    expect(revoked.exitCode, revoked.stderr).toBe(0)
    expect(revoked.json.result?.counts).toMatchObject({failed: 0, revoked: 4})
    expect((await journal(out)).filter((entry) => entry.kind === 'site-url-allowed').map((e) => e.command)).toEqual([
      'verify',
      'revoke',
    ])
  }, 180_000)

  it('--allow-other-url refuses a different site: none of the run’s tokens is there', async () => {
    const site = await startTestSite({users: 20, version: '2.10'})
    const other = await startTestSite({users: 20, version: '2.10'})
    const out = join(await tempDir(), 'run')
    expect((await runCli(issueTokensArgs(site, out, '--limit', '4'))).exitCode).toBe(0)
    const verified = await runCli(['verify', '--out', out, '--ckan-url', other.ckanUrl, '--allow-other-url'])
    expect(verified.exitCode).toBe(5)
    expect(verified.error?.message).toContain('does not accept the run')
    const revoked = await runCli([
      'revoke',
      '--out',
      out,
      '--api-key-file',
      other.apiKeyFile,
      '--ckan-url',
      other.ckanUrl,
      '--allow-other-url',
    ])
    expect(revoked.exitCode).toBe(5)
    expect(revoked.error?.message).toContain('does not hold the run')
    expect((await journal(out)).some((entry) => entry.kind === 'site-url-allowed')).toBe(false)
  }, 180_000)
})
