import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {PROJECT_ROOT, runCli, runCliJson} from '../helpers/run-cli.js'
import {issueTokensArgs, querySite as query} from '../helpers/site-commands.js'
import {startTestSite, type TestSite} from '../helpers/test-site.js'
import {removeFolder, temporaryFolder} from './support.js'

// Issue 14 (messages): a huge --users name is cut in the error, and --users "" is refused rather
// than silently selecting nobody. One rule for every command with --users.

describe('bad input: --users', () => {
  let site: TestSite
  let dir: string
  let run: string
  const issue = (out: string, ...extra: string[]) => issueTokensArgs(site, out, ...extra)
  const tokenCount = async () => (await query(site, 'SELECT id FROM api_token')).length

  beforeAll(async () => {
    site = await startTestSite({autoStop: false, users: 12, version: '2.9'})
    dir = await temporaryFolder('ckan-migrate-users-flag-', {autoRemove: false})
    run = join(dir, 'run')
    const issued = await runCli(issue(run, '--limit', '2'))
    expect(issued.exitCode, issued.stdout).toBe(0)
  })
  afterAll(async () => {
    await site?.stop()
    await removeFolder(dir)
  })

  it('cuts a 100,000-character name to 80 characters and says how long it was', async () => {
    const huge = 'a'.repeat(100_000)
    const result = await runCliJson(issue(join(dir, 'huge-run'), '--users', `${huge},also-unknown`))
    expect(result.exitCode, result.stdout).toBe(7)
    expect(result.json.error!.message).toBe(
      `2 users are not in the CKAN database: "${'a'.repeat(80)}…" (100000 characters), "also-unknown"`,
    )
    expect(result.stdout.length + result.stderr.length).toBeLessThan(2000)

    const revoke = await runCliJson(['revoke', '--out', run, '--api-key-file', site.apiKeyFile, '--users', huge])
    expect(revoke.exitCode, revoke.stdout).toBe(7)
    expect(revoke.json.error!.message).toBe(
      `1 of the --users hold no token in this run: "${'a'.repeat(80)}…" (100000 characters)`,
    )
  })

  it('refuses an empty --users (--users=, or only commas) in one line, creating nothing', async () => {
    const before = await tokenCount()
    // `--users ""` (a separate empty word) is oclif's usage error; `--users=""` reached the command.
    const separate = await runCliJson(issue(join(dir, 'empty-run'), '--users', ''))
    expect(separate.exitCode).toBe(2)
    expect(separate.json.error!.message).toBe('Flag --users expects a value')
    for (const users of ['--users=', '--users=,', '--users=,,']) {
      const result = await runCliJson(issue(join(dir, 'empty-run'), users))
      expect(result.exitCode, result.stdout).toBe(7)
      expect(result.json.error).toMatchObject({code: 'badInput', message: '--users names no user'})
      expect(result.json.error!.suggestion).toContain('--users alice,bob')
    }
    const revoke = await runCliJson(['revoke', '--out', run, '--api-key-file', site.apiKeyFile, '--users='])
    expect(revoke.exitCode, revoke.stdout).toBe(7)
    expect(revoke.json.error!.message).toBe('--users names no user')
    const bundle = await runCliJson([
      'bundle',
      '--out',
      run,
      '--bundle-dir',
      join(dir, 'bundles'),
      '--server-cert',
      join(PROJECT_ROOT, 'assets/sandbox-server.cert'),
      '--users=',
      '--dry-run',
    ])
    expect(bundle.json.error?.message, bundle.stdout).toBe('--users names no user')
    expect(await tokenCount()).toBe(before)
  })
})
