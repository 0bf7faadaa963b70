import {parse} from 'csv-parse/sync'
import {readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import pg from 'pg'
import {describe, expect, it} from 'vitest'

import {createCkanSchema} from '../../src/sandbox/ckan-schema.js'
import {issueTokensArgs} from '../helpers/site-commands.js'
import {runCliJson} from '../helpers/run-cli.js'
import {runCliChild} from '../helpers/run-cli-child.js'
import {createTestDatabase} from '../helpers/test-database.js'
import {startTestSite} from '../helpers/test-site.js'
import {exists, expectNoLeak, type ProductionRun, runProduction, storedSecrets, temporaryFolder} from './support.js'

/**
 * What the installed ckan-migrate prints (oclif's production error handling, a child process):
 * the message on one line, oclif's "Code:" line, the "Try this:" suggestion, and nothing else.
 */
function expectProductionError(
  run: ProductionRun,
  exit: number,
  code: string,
  message: RegExp,
  secrets: string[] = [],
): void {
  const describe = `exit ${run.code}\nstdout: ${run.stdout}\nstderr: ${run.stderr}`
  expect(run.code, describe).toBe(exit)
  expect(run.stdout, describe).toBe('')
  const lines = run.stderr.split('\n').filter((line) => line.trim() !== '')
  expect(lines[0], describe).toMatch(/^ › {3}Error: /)
  expect(lines[0]!.replace(/^ › {3}Error: /, '')).toMatch(message)
  expect(lines.slice(1), describe).toEqual([` ›   Code: ${code}`, expect.stringMatching(/^ › {3}Try this: \S/)])
  expectNoLeak(run.stdout + run.stderr, secrets)
}

function expectProductionJson(
  run: ProductionRun,
  exit: number,
  code: string,
  message: RegExp,
  secrets: string[] = [],
): void {
  expect(run.code, run.stderr).toBe(exit)
  const json = JSON.parse(run.stdout) as {error: {code: string; message: string; suggestion?: string}; status: number}
  expect(json.status).toBe(exit)
  expect(json.error.code).toBe(code)
  expect(json.error.message).toMatch(message)
  expect(json.error.suggestion).toBeTruthy()
  expect(run.stderr).toBe('')
  expectNoLeak(run.stdout, secrets)
}

describe('bad input through the production entry (a child process, as users run it)', () => {
  it('a broken ckan.ini: three short lines on stderr, no stack', async () => {
    const dir = await temporaryFolder()
    const ini = join(dir, 'ckan.ini')
    await writeFile(ini, '[app:main]\nsqlalchemy.url = postgresql://ckan:%(password)s@db/ckan\n')
    expectProductionError(
      await runProduction(['audit', '--ckan-ini', ini]),
      7,
      'badInput',
      /sqlalchemy\.url cannot be interpolated/,
    )
    expectProductionJson(
      await runProduction(['audit', '--ckan-ini', ini, '--json']),
      7,
      'badInput',
      /cannot be interpolated/,
    )
  })

  it('a database that is not CKAN’s', async () => {
    const database = await createTestDatabase()
    expectProductionError(
      await runProduction(['audit', '--database-url', database.url]),
      9,
      'notCkanDatabase',
      /is not a CKAN database: it has no "user" table$/,
    )
    expectProductionJson(
      await runProduction(['audit', '--database-url', database.url, '--json']),
      9,
      'notCkanDatabase',
      /no "user" table/,
    )
  })

  it('an unreachable database with a password in the URL (backup): the password never shows', async () => {
    const dir = await temporaryFolder()
    const {makeThrowawayKey} = await import('../lib/backup/throwaway-key.js')
    const key = await makeThrowawayKey()
    const args = [
      'backup',
      '--database-url',
      'postgresql://ckan:s3cret-pw@127.0.0.1:9/ckan',
      '--dir',
      join(dir, 'backups'),
      '--recipient-key',
      key.publicKeyFile,
    ]
    expectProductionError(
      await runProduction(args),
      8,
      'databaseUnreachable',
      /Cannot reach the CKAN database at postgresql:\/\/ckan:\*\*\*@127\.0\.0\.1:9\/ckan/,
      ['s3cret-pw'],
    )
    expectProductionJson(await runProduction([...args, '--json']), 8, 'databaseUnreachable', /connection refused/, [
      's3cret-pw',
    ])
    expect(await exists(join(dir, 'backups'))).toBe(false)
  })

  it('no credential, and a credential in the environment that is two lines', async () => {
    const dir = await temporaryFolder()
    const args = [
      'issue-tokens',
      '--ckan-url',
      'http://127.0.0.1:9',
      '--database-url',
      'postgresql://ckan@127.0.0.1:9/ckan',
      '--out',
      join(dir, 'run'),
    ]
    expectProductionError(
      await runProduction(args, {CKAN_MIGRATE_API_KEY: ''}),
      7,
      'badInput',
      /^No CKAN credential given$/,
    )
    const twoLines = 'first-secret-line\nsecond-secret-line'
    expectProductionError(
      await runProduction(args, {CKAN_MIGRATE_API_KEY: twoLines}),
      7,
      'badInput',
      /^CKAN_MIGRATE_API_KEY must hold exactly one API token or key/,
      ['first-secret-line', 'second-secret-line'],
    )
    expect(await exists(join(dir, 'run'))).toBe(false)
  })

  it('usage errors (an unknown flag, an unknown --ckan-version): exit 2, no stack', async () => {
    for (const args of [
      ['audit', '--no-such-flag'],
      ['sandbox', '--ckan-version', '2.8'],
    ]) {
      const run = await runProduction(args)
      expect(run.code, run.stderr).toBe(2)
      expect(run.stderr).toMatch(
        /^ › {3}Error: (Nonexistent flag: --no-such-flag|Expected --ckan-version=2\.8 to be one of: 2\.9, 2\.10, 2\.11)/,
      )
      expectNoLeak(run.stdout + run.stderr)
    }
  })

  it('an interrupted issue-tokens (SIGINT) exits 130, loses nothing, and the same command resumes', async () => {
    const site = await startTestSite({faults: {latencyMs: 40}, users: 60, version: '2.9'})
    const dir = await temporaryFolder()
    const out = join(dir, 'run')
    const args = issueTokensArgs(site, out, '--concurrency', '2')
    const interrupted = await runCliChild(args, {
      interrupt: {delayMs: 100, journal: join(out, 'journal.jsonl'), signal: 'SIGINT'},
    })
    expect(interrupted.signalled).toBe(true)
    expect(interrupted.code, interrupted.output).toBe(130)
    expect(interrupted.output).toContain('Interrupted: run the same command again to go on.')
    const stored = await storedSecrets(out)
    expectNoLeak(interrupted.output, [site.adminCredential.reveal(), ...stored])
    const report = parse(await readFile(join(out, 'issue-tokens-report.csv'), 'utf8'), {
      bom: true,
      columns: true,
    }) as Array<Record<string, string>>
    const issuedBefore = report.filter((row) => row.outcome === 'issued').length
    expect(issuedBefore).toBeGreaterThan(0)
    expect(report.some((row) => row.outcome === 'not started')).toBe(true)

    site.emulator.setFaults({})
    const resumed = await runCliJson<{counts: {alreadyIssued: number; failed: number; issued: number}}>(args)
    expect(resumed.exitCode, resumed.stdout).toBe(0)
    expect(resumed.json.result?.counts).toMatchObject({alreadyIssued: issuedBefore, failed: 0})
    // Exactly one token of this run per user, and every token stored before the interrupt is still there.
    const client = new pg.Client({connectionString: site.databaseUrl})
    await client.connect()
    try {
      const runId = JSON.parse(await readFile(join(out, 'run.json'), 'utf8')).runId as string
      const perUser = await client.query<{count: string}>(
        `SELECT count(*) FROM api_token WHERE name LIKE '%' || $1 || '%' GROUP BY user_id`,
        [runId],
      )
      expect(perUser.rows.every((row) => row.count === '1')).toBe(true)
      expect(perUser.rows).toHaveLength(issuedBefore + resumed.json.result!.counts.issued)
    } finally {
      await client.end()
    }
    const after = await storedSecrets(out)
    for (const secret of stored) expect(after).toContain(secret)
  })

  it('the development entry (bin/dev.js, behind npm run sandbox) prints warnings and errors without a stack too', async () => {
    const database = await createTestDatabase()
    const client = new pg.Client({connectionString: database.url})
    await client.connect()
    await createCkanSchema(client, '2.9')
    await client.end()
    const stackLines = (output: string) => output.split('\n').filter((line) => /^\s+at /.test(line))
    const warned = await runCliChild(['audit', '--database-url', database.url.replace(/^postgresql:/, 'postgres:')])
    expect(warned.code, warned.output).toBe(0)
    expect(warned.output).toMatch(/Warning: The database URL uses postgres:\/\//)
    expect(stackLines(warned.output)).toEqual([])
    const failed = await runCliChild(['audit', '--database-url', 'postgresql://ckan@127.0.0.1:1/ckan'])
    expect(failed.code, failed.output).toBe(8)
    expect(failed.output).toMatch(/Error: Cannot reach the CKAN database at postgresql:\/\/ckan@127\.0\.0\.1:1\/ckan/)
    expect(stackLines(failed.output)).toEqual([])
  })
})
