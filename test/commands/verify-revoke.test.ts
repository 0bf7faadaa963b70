import {parse} from 'csv-parse/sync'
import {mkdtemp, readFile, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import pg from 'pg'
import {describe, expect, it, onTestFinished} from 'vitest'

import {EXIT_CODES} from '../../src/lib/errors.js'

import type {RevokeResult} from '../../src/lib/workflows/revoke.js'
import type {VerifyResult} from '../../src/lib/workflows/verify.js'
import {issueTokensArgs} from '../helpers/site-commands.js'
import {runCli, runCliJson} from '../helpers/run-cli.js'
import {startTestSite, type TestSite} from '../helpers/test-site.js'

async function sql(site: TestSite, text: string, values: unknown[] = []): Promise<Array<Record<string, unknown>>> {
  const client = new pg.Client({connectionString: site.databaseUrl})
  await client.connect()
  try {
    return (await client.query(text, values)).rows
  } finally {
    await client.end()
  }
}

describe('verify and revoke', () => {
  it('verifies each token alone, fails (exit 6) for one CKAN no longer holds, and revokes the run', async () => {
    const site = await startTestSite({users: 30, version: '2.10'})
    const dir = await mkdtemp(join(tmpdir(), 'ckan-migrate-verify-'))
    onTestFinished(() => rm(dir, {force: true, recursive: true}))
    const out = join(dir, 'run')
    const issued = await runCli(issueTokensArgs(site, out, '--limit', '4'))
    expect(issued.exitCode).toBe(0)

    const good = await runCliJson<VerifyResult>(['verify', '--out', out])
    expect(good.exitCode).toBe(0)
    expect(good.json.result?.counts).toMatchObject({failed: 0, ok: 4, tokens: 4})
    const journal = (await readFile(join(out, 'journal.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line))
    expect(journal.filter((entry) => entry.kind === 'token-verified' && entry.ok === true)).toHaveLength(4)

    const victim = JSON.parse((await readFile(join(out, 'tokens.jsonl'), 'utf8')).split('\n')[0]!) as {
      jti: string
      token: string
      userId: string
    }
    await sql(site, 'DELETE FROM api_token WHERE id = $1', [victim.jti])
    const bad = await runCli<VerifyResult>(['verify', '--out', out])
    expect(bad.exitCode).toBe(6)
    expect(bad.stdout).toContain('3 of 4 tokens work')
    const report = parse(await readFile(join(out, 'verify-report.csv'), 'utf8'), {bom: true, columns: true}) as Array<
      Record<string, string>
    >
    expect(report.find((row) => row.user_id === victim.userId)?.status).toBe('403')

    const dry = await runCliJson<RevokeResult>(['revoke', '--out', out, '--api-key-file', site.apiKeyFile, '--dry-run'])
    expect(dry.json.result?.counts).toMatchObject({planned: 4})
    const revoked = await runCliJson<RevokeResult>(['revoke', '--out', out, '--api-key-file', site.apiKeyFile])
    expect(revoked.exitCode, revoked.stdout).toBe(0)
    expect(revoked.json.result?.counts).toMatchObject({failed: 0, revoked: 4})
    const runId = JSON.parse(await readFile(join(out, 'run.json'), 'utf8')).runId as string
    expect(await sql(site, `SELECT id FROM api_token WHERE name LIKE '%' || $1 || '%'`, [runId])).toHaveLength(0)
    // Idempotent: a second revoke succeeds.
    expect((await runCli(['revoke', '--out', out, '--api-key-file', site.apiKeyFile])).exitCode).toBe(0)
    const written = [
      good.stdout,
      bad.stdout,
      bad.stderr,
      dry.stdout,
      revoked.stdout,
      await readFile(join(out, 'verify-report.csv'), 'utf8'),
      await readFile(join(out, 'revoke-report.csv'), 'utf8'),
      await readFile(join(out, 'journal.jsonl'), 'utf8'),
    ].join('\n')
    expect(written).not.toContain(victim.jti)
    expect(written).not.toContain(victim.token)
  }, 120_000)

  it('reports tokens whose check keeps getting a 503 as "could not check" (exit 19), never as not working', async () => {
    const site = await startTestSite({users: 20, version: '2.10'})
    const dir = await mkdtemp(join(tmpdir(), 'ckan-migrate-verify-503-'))
    onTestFinished(() => rm(dir, {force: true, recursive: true}))
    const out = join(dir, 'run')
    expect((await runCli(issueTokensArgs(site, out, '--limit', '3'))).exitCode).toBe(0)

    // A proxy answering 503 to every check: retried by the policy, then given up within --timeout
    // (on a loaded machine the retries may reach the 2 s first: then that is the reason given).
    site.emulator.setFaults({actions: ['api_token_list'], status503: 1})
    const busy = await runCli<VerifyResult>(['verify', '--out', out, '--timeout', '2'])
    expect(busy.exitCode, busy.stdout).toBe(EXIT_CODES.verificationIncomplete)
    expect(busy.stdout).toContain('0 of 3 tokens work; 3 could not be checked')
    expect(busy.stdout).toMatch(/could not check "[^"]+": (HTTP 503|no answer within 2 s)/)
    expect(busy.stdout).not.toMatch(/^ {2}failed /m)
    const report = parse(await readFile(join(out, 'verify-report.csv'), 'utf8'), {bom: true, columns: true}) as Array<
      Record<string, string>
    >
    expect(report).toHaveLength(3)
    for (const row of report) {
      expect(row.outcome).toMatch(
        /^could not check: (HTTP 503: server error|no answer within 2 s \(--timeout, \d+ attempts\))$/,
      )
    }
    const json = await runCliJson<VerifyResult>(['verify', '--out', out, '--timeout', '2'])
    expect(json.json.status).toBe(EXIT_CODES.verificationIncomplete)
    expect(json.json.result?.counts).toMatchObject({failed: 0, ok: 0, tokens: 3, unchecked: 3})
    expect(json.json.result?.unchecked).toHaveLength(3)
    const journal = await readFile(join(out, 'journal.jsonl'), 'utf8')
    // Nothing was learnt about the tokens: no verification is journaled (purge-keys goes by them).
    expect(journal).not.toContain('"token-verified"')

    // Once CKAN answers again, the same tokens work: they never were "dead".
    site.emulator.setFaults({})
    const again = await runCli<VerifyResult>(['verify', '--out', out])
    expect(again.exitCode, again.stdout).toBe(0)
    expect(again.stdout).toContain('3 of 3 tokens work (run')
  }, 120_000)
})
