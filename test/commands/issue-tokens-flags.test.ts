import {parse} from 'csv-parse/sync'
import {readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import pg from 'pg'
import {describe, expect, it} from 'vitest'

import {upgradeSandboxDatabase} from '../../src/sandbox/sandbox-site.js'
import type {IssueTokensResult} from '../../src/lib/workflows/issue-tokens.js'
import type {RevokeResult} from '../../src/lib/workflows/revoke.js'
import type {VerifyResult} from '../../src/lib/workflows/verify.js'
import {runCli, runCliJson} from '../helpers/run-cli.js'
import {runCliChild} from '../helpers/run-cli-child.js'
import {issueTokensArgs as args, querySite as query, tempDir as makeTempDir} from '../helpers/site-commands.js'
import {startTestSite, type TestSite} from '../helpers/test-site.js'

const tempDir = () => makeTempDir('ckan-migrate-flags-')

const KEYED = `apikey IS NOT NULL AND apikey <> ''`

async function runTokenUsers(site: TestSite, out: string): Promise<string[]> {
  const runId = JSON.parse(await readFile(join(out, 'run.json'), 'utf8')).runId as string
  const rows = await query<{user_id: string}>(site, `SELECT user_id FROM api_token WHERE name LIKE '%' || $1 || '%'`, [
    runId,
  ])
  return rows.map((row) => row.user_id).sort()
}

function readStore(text: string): Array<{jti: string; token: string; userId: string}> {
  return text
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line))
}

describe('issue-tokens selection flags', () => {
  it('--users-file, --sysadmins-only, --include-pending and --limit select who gets a token', async () => {
    const site = await startTestSite({users: 150, version: '2.9'})
    const dir = await tempDir()
    const active = await query<{id: string; name: string; sysadmin: boolean}>(
      site,
      `SELECT id, name, sysadmin FROM "user" WHERE state = 'active' AND ${KEYED} AND name <> $1 ORDER BY name`,
      [site.siteUserName],
    )
    const pending = await query<{id: string}>(site, `SELECT id FROM "user" WHERE state = 'pending' AND ${KEYED}`)
    expect(pending.length).toBeGreaterThan(0)

    // --users-file: names and ids, comments, CRLF.
    const usersFile = join(dir, 'users.txt')
    await writeFile(usersFile, `# first batch\r\n${active[0]!.name}\r\n${active[1]!.id}\r\n`)
    const fromFile = await runCliJson<IssueTokensResult>(args(site, join(dir, 'file'), '--users-file', usersFile))
    expect(fromFile.exitCode).toBe(0)
    expect(fromFile.json.result?.counts).toMatchObject({issued: 2, selected: 2})
    expect(await runTokenUsers(site, join(dir, 'file'))).toEqual([active[0]!.id, active[1]!.id].sort())

    // --sysadmins-only: only active sysadmins holding a key.
    const admins = active
      .filter((user) => user.sysadmin)
      .map((user) => user.id)
      .sort()
    expect(admins.length).toBeGreaterThan(0)
    const onlyAdmins = await runCliJson<IssueTokensResult>(args(site, join(dir, 'admins'), '--sysadmins-only'))
    expect(onlyAdmins.exitCode).toBe(0)
    expect(await runTokenUsers(site, join(dir, 'admins'))).toEqual(admins)

    // --include-pending: the pending users holding a key join the plan, reported skipped without it.
    const plain = await runCliJson<IssueTokensResult>(args(site, join(dir, 'pending'), '--dry-run'))
    expect(
      plain.json.result?.skippedByReason['pending user (pass --include-pending to give pending users tokens)'],
    ).toBe(pending.length)
    const withPending = await runCliJson<IssueTokensResult>(args(site, join(dir, 'pending'), '--include-pending'))
    expect(withPending.exitCode).toBe(0)
    expect(withPending.json.result?.counts.issued).toBe(active.length + pending.length)
    expect(await runTokenUsers(site, join(dir, 'pending'))).toEqual(
      [...active, ...pending].map((user) => user.id).sort(),
    )

    // --limit: a first batch, in name order; the same --out then goes on with the rest.
    const limited = await runCliJson<IssueTokensResult>(args(site, join(dir, 'limit'), '--limit', '3'))
    expect(limited.json.result?.counts).toMatchObject({issued: 3, selected: 3})
    expect(await runTokenUsers(site, join(dir, 'limit'))).toEqual(
      active
        .slice(0, 3)
        .map((user) => user.id)
        .sort(),
    )
    const rest = await runCliJson<IssueTokensResult>(args(site, join(dir, 'limit')))
    expect(rest.json.result?.counts).toMatchObject({alreadyIssued: 3, issued: active.length - 3})
  }, 120_000)

  it('with expire_api_token, refuses to run without a lifetime and gives tokens an exp with --expires-in/--unit', async () => {
    const site = await startTestSite({expireApiToken: true, users: 20, version: '2.10'})
    const dir = await tempDir()
    const refused = await runCliJson(args(site, join(dir, 'run'), '--limit', '2'))
    expect(refused.exitCode).toBe(7)
    expect(refused.json.error?.message).toMatch(
      /has the expire_api_token plugin, which requires a lifetime for every token$/,
    )
    expect(refused.json.error?.suggestion).toContain('--expires-in')
    const alone = await runCli(args(site, join(dir, 'run'), '--expires-in', '2'))
    expect(alone.exitCode).toBe(7)
    expect(alone.error?.message).toBe('--expires-in and --unit go together')

    const issued = await runCliJson<IssueTokensResult>(
      args(site, join(dir, 'run'), '--limit', '2', '--expires-in', '2', '--unit', 'day'),
    )
    expect(issued.exitCode).toBe(0)
    const stored = readStore(await readFile(join(dir, 'run', 'tokens.jsonl'), 'utf8'))
    expect(stored).toHaveLength(2)
    for (const token of stored) {
      const payload = JSON.parse(Buffer.from(token.token.split('.')[1]!, 'base64url').toString('utf8')) as {
        exp?: number
        iat: number
      }
      expect(payload.exp).toBeDefined()
      expect(payload.exp! - payload.iat).toBeGreaterThanOrEqual(2 * 86_400 - 5)
      expect(payload.exp! - payload.iat).toBeLessThanOrEqual(2 * 86_400 + 5)
    }
    const report = parse(await readFile(join(dir, 'run', 'issue-tokens-report.csv'), 'utf8'), {
      bom: true,
      columns: true,
    }) as Array<Record<string, string>>
    const expiry = report.filter((row) => row.outcome === 'issued').map((row) => Date.parse(row.expires_at!))
    expect(expiry).toHaveLength(2)
    for (const at of expiry) expect(at - Date.now()).toBeGreaterThan(86_400_000)
  }, 120_000)

  it('on Ctrl-C finishes what is in flight, writes the report, exits 130, and the same command resumes', async () => {
    const site = await startTestSite({faults: {latencyMs: 40}, users: 120, version: '2.9'})
    const dir = await tempDir()
    const out = join(dir, 'run')
    const selected = await query<{id: string}>(
      site,
      `SELECT id FROM "user" WHERE state = 'active' AND ${KEYED} AND name <> $1`,
      [site.siteUserName],
    )
    const interrupted = await runCliChild(args(site, out, '--concurrency', '2'), {
      interrupt: {delayMs: 100, journal: join(out, 'journal.jsonl'), signal: 'SIGINT'},
    })
    expect(interrupted.signalled).toBe(true)
    expect(interrupted.code, interrupted.output).toBe(130)
    expect(interrupted.output).toContain('Interrupted: run the same command again to go on.')
    const report = parse(await readFile(join(out, 'issue-tokens-report.csv'), 'utf8'), {
      bom: true,
      columns: true,
    }) as Array<Record<string, string>>
    const issuedBefore = report.filter((row) => row.outcome === 'issued').length
    expect(issuedBefore).toBeGreaterThan(0)
    expect(report.filter((row) => row.outcome === 'not started').length).toBeGreaterThan(0)
    // Every token CKAN made before the interrupt is in the store.
    expect(await runTokenUsers(site, out)).toHaveLength(
      readStore(await readFile(join(out, 'tokens.jsonl'), 'utf8')).length,
    )

    site.emulator.setFaults({})
    const resumed = await runCliJson<IssueTokensResult>(args(site, out))
    expect(resumed.exitCode).toBe(0)
    expect(resumed.json.result?.counts).toMatchObject({
      alreadyIssued: issuedBefore,
      failed: 0,
      issued: selected.length - issuedBefore,
    })
    expect(await runTokenUsers(site, out)).toEqual(selected.map((user) => user.id).sort())
  }, 120_000)
})

describe('verify --legacy and revoked tokens', () => {
  it('reports legacy keys still accepted on 2.9 (exit 6) and refused after the upgrade to 2.10 (exit 0)', async () => {
    // Without DataPusher and XLoader, whose 2.10 token settings would stop the upgraded site from starting.
    const site = await startTestSite({datapusher: false, users: 20, version: '2.9', xloader: false})
    const out = join(await tempDir(), 'run')
    expect((await runCli(args(site, out, '--limit', '3'))).exitCode).toBe(0)
    const before = await runCliJson<VerifyResult>(['verify', '--out', out, '--legacy', '--ckan-ini', site.ckanIni])
    expect(before.exitCode).toBe(6)
    expect(before.json.result?.counts).toMatchObject({failed: 3, legacyStillAccepted: 3, ok: 3, tokens: 3})
    const report = parse(await readFile(join(out, 'verify-report.csv'), 'utf8'), {bom: true, columns: true}) as Array<
      Record<string, string>
    >
    expect(report.map((row) => row.legacy_key)).toEqual(['still accepted', 'still accepted', 'still accepted'])

    // The upgrade: CKAN 2.10's database migrations, then 2.10 over the same database and ini.
    const db = new pg.Client({connectionString: site.databaseUrl})
    await db.connect()
    try {
      await upgradeSandboxDatabase(db, '2.10')
    } finally {
      await db.end()
    }
    await site.emulator.setVersion('2.10')
    const after = await runCliJson<VerifyResult>(['verify', '--out', out, '--legacy', '--ckan-ini', site.ckanIni])
    expect(after.exitCode, after.stdout).toBe(0)
    expect(after.json.result?.counts).toMatchObject({failed: 0, legacyStillAccepted: 0, ok: 3, tokens: 3})
    const keys = await query<{apikey: string}>(site, `SELECT apikey FROM "user" WHERE ${KEYED}`)
    const written = [
      before.stdout,
      before.stderr,
      after.stdout,
      after.stderr,
      await readFile(join(out, 'verify-report.csv'), 'utf8'),
      await readFile(join(out, 'journal.jsonl'), 'utf8'),
    ].join('\n')
    for (const {apikey} of keys) expect(written.includes(apikey)).toBe(false)
  }, 120_000)

  it('treats a token revoked by revoke as rolled back: verify skips it, issue-tokens gives no new one, revoke again is a no-op', async () => {
    const site = await startTestSite({users: 20, version: '2.10'})
    const out = join(await tempDir(), 'run')
    expect((await runCli(args(site, out, '--limit', '3'))).exitCode).toBe(0)
    const [victim] = readStore(await readFile(join(out, 'tokens.jsonl'), 'utf8'))
    const revoked = await runCliJson<RevokeResult>([
      'revoke',
      '--out',
      out,
      '--api-key-file',
      site.apiKeyFile,
      '--users',
      victim!.userId,
    ])
    expect(revoked.json.result?.counts).toMatchObject({failed: 0, revoked: 1, tokens: 1})

    const verified = await runCliJson<VerifyResult>(['verify', '--out', out])
    expect(verified.exitCode).toBe(0)
    expect(verified.json.result?.counts).toMatchObject({ok: 2, revoked: 1, tokens: 2})

    const resumed = await runCliJson<IssueTokensResult>(args(site, out, '--limit', '3'))
    expect(resumed.exitCode).toBe(0)
    expect(resumed.json.result?.counts).toMatchObject({alreadyIssued: 2, issued: 0, revoked: 1})
    expect(await runTokenUsers(site, out)).toHaveLength(2)
    const report = parse(await readFile(join(out, 'issue-tokens-report.csv'), 'utf8'), {
      bom: true,
      columns: true,
    }) as Array<Record<string, string>>
    expect(report.find((row) => row.user_id === victim!.userId)?.outcome).toMatch(
      /^revoked: revoked .*; issue again with a new --out$/,
    )

    const again = await runCliJson<RevokeResult>(['revoke', '--out', out, '--api-key-file', site.apiKeyFile])
    expect(again.json.result?.counts).toMatchObject({alreadyRevoked: 1, failed: 0, revoked: 2, tokens: 3})
    expect(await runTokenUsers(site, out)).toHaveLength(0)
    // The full jti is kept only in the private revoked.jsonl, never in the journal.
    expect(await readFile(join(out, 'journal.jsonl'), 'utf8')).not.toContain(victim!.jti)
    expect(await readFile(join(out, 'revoked.jsonl'), 'utf8')).toContain(victim!.jti)
  }, 120_000)
})
