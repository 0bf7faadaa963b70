import {parse} from 'csv-parse/sync'
import {mkdtemp, readFile, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {describe, expect, it, onTestFinished} from 'vitest'

import type {VerifyResult} from '../../src/lib/workflows/verify.js'
import {issueTokensArgs, rewriteConfigArgs} from '../helpers/site-commands.js'
import {runCli, runCliJson} from '../helpers/run-cli.js'
import {startTestSite} from '../helpers/test-site.js'

describe('verify counts', () => {
  it('counts a legacy key once per user (the site user holds two service tokens) and says how many tokens revoke revoked', async () => {
    const site = await startTestSite({apiTokenLines: false, users: 8, version: '2.9'})
    const dir = await mkdtemp(join(tmpdir(), 'ckan-migrate-verify-counts-'))
    onTestFinished(() => rm(dir, {force: true, recursive: true}))
    const out = join(dir, 'run')
    expect((await runCli(issueTokensArgs(site, out, '--limit', '2'))).exitCode).toBe(0)
    // DataPusher and XLoader tokens, both for the site user, in the same run.
    const rewrite = await runCli(rewriteConfigArgs(site, out))
    expect(rewrite.exitCode, rewrite.stderr).toBe(0)

    const legacy = await runCliJson<VerifyResult>(['verify', '--out', out, '--legacy', '--ckan-ini', site.ckanIni])
    // 2.9 still accepts the keys: the two users' and the site user's, three keys for four tokens.
    expect(legacy.json.result?.counts).toMatchObject({legacyStillAccepted: 3, ok: 4, tokens: 4})

    expect((await runCli(['revoke', '--out', out, '--api-key-file', site.apiKeyFile])).exitCode).toBe(0)
    const after = await runCliJson<VerifyResult>(['verify', '--out', out])
    expect(after.json.result?.counts).toMatchObject({ok: 0, revoked: 4, tokens: 0})
    const text = await runCli(['verify', '--out', out])
    expect(text.stdout).toContain('All 4 tokens of run')
    expect(text.stdout).toContain('were revoked by revoke: none left to verify.')
    expect(text.stdout).not.toMatch(/\d+ of \d+ tokens work/)
    // The report lists them as revoked, not as verified.
    const report = parse(await readFile(join(out, 'verify-report.csv'), 'utf8'), {bom: true, columns: true}) as Array<
      Record<string, string>
    >
    expect(report).toHaveLength(4)
    for (const row of report) {
      expect(row.outcome).toMatch(/^revoked \d{4}-\d\d-\d\dT/)
      expect(row.status).toBe('not checked')
    }
  }, 120_000)
})
