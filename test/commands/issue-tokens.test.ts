import {parse} from 'csv-parse/sync'
import {readFile, stat, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'

import type {IssueTokensResult} from '../../src/lib/workflows/issue-tokens.js'
import {runCli, runCliJson} from '../helpers/run-cli.js'
import {issueTokensArgs as args, querySite as query, tempDir as makeTempDir} from '../helpers/site-commands.js'
import {startTestSite, type TestSite} from '../helpers/test-site.js'

const tempDir = () => makeTempDir('ckan-migrate-issue-')

/** Users that hold a legacy key and are active, without the site user: the default selection. */
async function defaultSelection(site: TestSite): Promise<Array<{id: string; name: string}>> {
  return query(
    site,
    `SELECT id, name FROM "user" WHERE state = 'active' AND apikey IS NOT NULL AND apikey <> '' AND name <> $1 ORDER BY name`,
    [site.siteUserName],
  )
}

describe('issue-tokens', () => {
  it('plans under --dry-run, then issues one token per selected user, and a rerun issues none', async () => {
    const site = await startTestSite({users: 40, version: '2.9'})
    const out = join(await tempDir(), 'run')
    const selected = await defaultSelection(site)
    expect(selected.length).toBeGreaterThan(3)
    const before = (await query<{count: string}>(site, 'SELECT count(*) FROM api_token'))[0]!.count

    const dry = await runCliJson<IssueTokensResult>(args(site, out, '--dry-run'))
    expect(dry.exitCode).toBe(0)
    expect(dry.json.result).toMatchObject({
      counts: {planned: selected.length, selected: selected.length},
      dryRun: true,
      reportPath: null,
    })
    await expect(stat(out)).rejects.toThrow(/ENOENT/)
    expect((await query<{count: string}>(site, 'SELECT count(*) FROM api_token'))[0]!.count).toBe(before)

    const first = await runCli<IssueTokensResult>(args(site, out))
    expect(first.exitCode).toBe(0)
    expect(first.stdout).toContain(`${selected.length} tokens issued, 0 already issued, 0 failed`)
    const runId = JSON.parse(await readFile(join(out, 'run.json'), 'utf8')).runId as string
    const tokens = await query<{name: string; user_id: string}>(
      site,
      `SELECT user_id, name FROM api_token WHERE name LIKE '%' || $1 || '%'`,
      [runId],
    )
    expect(tokens.map((token) => token.user_id).sort()).toEqual(selected.map((user) => user.id).sort())
    expect((await stat(out)).mode & 0o777).toBe(0o700)
    expect((await stat(join(out, 'tokens.jsonl'))).mode & 0o777).toBe(0o600)

    const report = parse(await readFile(join(out, 'issue-tokens-report.csv'), 'utf8'), {
      bom: true,
      columns: true,
    }) as Array<Record<string, string>>
    expect(Object.keys(report[0]!)).toEqual([
      'user_id',
      'name',
      'state',
      'sysadmin',
      'email',
      'outcome',
      'token_name',
      'token_id_fingerprint',
      'created_at',
      'expires_at',
      'attempts',
    ])
    const issuedRows = report.filter((row) => row.outcome === 'issued')
    expect(issuedRows).toHaveLength(selected.length)
    expect(issuedRows[0]!.token_name).toContain(runId)
    expect(issuedRows[0]!.token_id_fingerprint).toMatch(/^[\da-f]{8}$/)
    // Users holding a key who are deleted, pending, or the site user are reported with the reason.
    expect(report.filter((row) => row.outcome?.startsWith('skipped: ')).length).toBeGreaterThan(0)
    expect(
      report.some((row) => row.name === site.siteUserName && row.outcome?.startsWith('skipped: the site user')),
    ).toBe(true)

    const again = await runCliJson<IssueTokensResult>(args(site, out))
    expect(again.exitCode).toBe(0)
    expect(again.json.result?.counts).toMatchObject({alreadyIssued: selected.length, issued: 0})
    const after = await query(site, `SELECT user_id FROM api_token WHERE name LIKE '%' || $1 || '%'`, [runId])
    expect(after).toHaveLength(selected.length)

    // No token, jti, or key in anything written for the user to see.
    const secrets = (await readFile(join(out, 'tokens.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .flatMap((line) => {
        const stored = JSON.parse(line) as {jti: string; token: string}
        return [stored.jti, stored.token]
      })
    secrets.push(site.adminCredential.reveal())
    const written = [
      dry.stdout,
      dry.stderr,
      first.stdout,
      first.stderr,
      again.stdout,
      again.stderr,
      await readFile(join(out, 'issue-tokens-report.csv'), 'utf8'),
      await readFile(join(out, 'journal.jsonl'), 'utf8'),
    ].join('\n')
    for (const secret of secrets) expect(written.includes(secret)).toBe(false)
  }, 120_000)

  it('issues only for --users, and names the users it cannot find (exit 7)', async () => {
    const site = await startTestSite({users: 30, version: '2.10'})
    const out = join(await tempDir(), 'run')
    const [alice, bob] = await defaultSelection(site)
    const unknown = await runCli(args(site, out, '--users', `${alice!.name},nobody-here,ghost`))
    expect(unknown.exitCode).toBe(7)
    expect(unknown.error?.message).toBe('2 users are not in the CKAN database: "nobody-here", "ghost"')

    const {exitCode, json} = await runCliJson<IssueTokensResult>(
      args(site, out, '--users', `${alice!.name},${bob!.id}`),
    )
    expect(exitCode).toBe(0)
    expect(json.result?.counts).toMatchObject({issued: 2, selected: 2})
  }, 120_000)

  it('refuses a legacy key against CKAN 2.10 and a non-sysadmin credential (exit 4)', async () => {
    const site = await startTestSite({users: 20, version: '2.10'})
    const dir = await tempDir()
    const [someone] = await query<{apikey: string}>(
      site,
      `SELECT apikey FROM "user" WHERE apikey ~ '^[0-9a-f-]{36}$' AND NOT sysadmin AND state = 'active' LIMIT 1`,
    )
    const keyFile = join(dir, 'key')
    await writeFile(keyFile, someone!.apikey, {mode: 0o600})
    const legacy = await runCli([
      'issue-tokens',
      '--ckan-url',
      site.ckanUrl,
      '--api-key-file',
      keyFile,
      '--ckan-ini',
      site.ckanIni,
      '--out',
      join(dir, 'run'),
    ])
    expect(legacy.exitCode).toBe(4)
    expect(legacy.error?.message).toMatch(/legacy keys stop working on 2\.10.*use a token/)
    expect(legacy.stdout + legacy.stderr).not.toContain(someone!.apikey)

    const site29 = await startTestSite({users: 20, version: '2.9'})
    const [plain] = await query<{apikey: string}>(
      site29,
      `SELECT apikey FROM "user" WHERE apikey ~ '^[0-9a-f-]{36}$' AND NOT sysadmin AND state = 'active' LIMIT 1`,
    )
    await writeFile(keyFile, plain!.apikey, {mode: 0o600})
    const notAdmin = await runCli([
      'issue-tokens',
      '--ckan-url',
      site29.ckanUrl,
      '--api-key-file',
      keyFile,
      '--ckan-ini',
      site29.ckanIni,
      '--out',
      join(dir, 'run'),
    ])
    expect(notAdmin.exitCode).toBe(4)
    expect(notAdmin.error?.message).toMatch(/belongs to a user who is not a sysadmin/)
  }, 120_000)

  it('refuses an --out of another site (exit 5) and an unreachable CKAN (exit 3)', async () => {
    const site = await startTestSite({users: 10, version: '2.9'})
    const out = join(await tempDir(), 'run')
    expect((await runCli(args(site, out, '--limit', '1'))).exitCode).toBe(0)
    const other = await startTestSite({users: 10, version: '2.9'})
    const conflict = await runCli([
      'issue-tokens',
      '--ckan-url',
      other.ckanUrl,
      '--api-key-file',
      other.apiKeyFile,
      '--ckan-ini',
      other.ckanIni,
      '--out',
      out,
    ])
    expect(conflict.exitCode).toBe(5)
    expect(conflict.error?.message).toMatch(/belongs to another site/)
    await other.stop()
    const gone = await runCli([
      'issue-tokens',
      '--ckan-url',
      other.ckanUrl,
      '--api-key-file',
      site.apiKeyFile,
      '--database-url',
      site.databaseUrl,
      '--out',
      out,
    ])
    expect(gone.exitCode).toBe(3)
    expect(gone.error?.message).toMatch(/^Cannot reach CKAN for status_show/)
  }, 120_000)
})
