import {parse} from 'csv-parse/sync'
import {readFile} from 'node:fs/promises'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'

import type {AdoptionResult} from '../../src/lib/workflows/adoption.js'
import {SANDBOX_SERVER_CERT} from '../../src/sandbox/rehearse-migration.js'
import {runCli, runCliJson} from '../helpers/run-cli.js'
import {readJsonLines} from '../helpers/run-state.js'
import {issueTokensArgs, querySite, tempDir} from '../helpers/site-commands.js'
import {startTestSite, type TestSite} from '../helpers/test-site.js'

type StoredLine = {jti: string; token: string; userId: string; userName: string}

/** One authenticated call with a token alone, as a user's script makes it. */
async function useToken(site: TestSite, token: StoredLine): Promise<void> {
  const response = await fetch(`${site.ckanUrl}/api/3/action/api_token_list`, {
    body: JSON.stringify({user: token.userName, user_id: token.userName}),
    headers: {Authorization: token.token, 'Content-Type': 'application/json'},
    method: 'POST',
  })
  expect(response.status).toBe(200)
  await response.arrayBuffer()
}

describe.each(['2.9', '2.10', '2.11'] as const)('adoption on CKAN %s', (version) => {
  it('counts who used their token (not our own verify), legacy keys left, revoked and bundled, and gates on --require', async () => {
    const site = await startTestSite({users: 30, version})
    const dir = await tempDir('ckan-migrate-adoption-')
    const out = join(dir, 'run')
    const issued = await runCli(issueTokensArgs(site, out, '--limit', '6'))
    expect(issued.exitCode, issued.stdout + issued.stderr).toBe(0)
    // verify uses every token once: that is ckan-migrate, not the user, and must not count.
    expect((await runCli(['verify', '--out', out])).exitCode).toBe(0)
    expect((await runCli(['bundle', '--out', out, '--server-cert', SANDBOX_SERVER_CERT])).exitCode).toBe(0)
    const stored = await readJsonLines<StoredLine>(join(out, 'tokens.jsonl'))
    expect(stored).toHaveLength(6)

    const none = await runCliJson<AdoptionResult>(['adoption', '--out', out, '--ckan-ini', site.ckanIni])
    expect(none.exitCode, none.stdout).toBe(0)
    expect(none.json.result?.counts).toMatchObject({bundled: 6, notUsed: 6, people: 6, used: 0})

    // Three users' scripts switch: real authenticated calls move api_token.last_access.
    for (const token of stored.slice(0, 3)) await useToken(site, token)
    // One user's legacy key is cleared, another's token is revoked behind our back.
    await querySite(site, 'UPDATE "user" SET apikey = NULL WHERE id = $1', [stored[0]!.userId])
    await querySite(site, 'DELETE FROM api_token WHERE id = $1', [stored[5]!.jti])

    const gated = await runCli(['adoption', '--out', out, '--ckan-ini', site.ckanIni, '--require', '95%'])
    expect(gated.exitCode, gated.stdout + gated.stderr).toBe(18)
    expect(gated.stdout).toContain('3 of 5 users have used their token (60%); 2 have not')
    expect(gated.stdout).toContain('NOT met')
    const report = parse(await readFile(join(out, 'adoption-report.csv'), 'utf8'), {bom: true, columns: true}) as Array<
      Record<string, string>
    >
    // Formula-safe: the seeds' hostile names (=hyperlink(…), +cmd, -2+3) are neutralised.
    expect(report.some((row) => row.name!.startsWith("'"))).toBe(true)
    for (const row of report) expect(row.name).not.toMatch(/^[=+\-@]/)
    const byUser = new Map(report.map((row) => [row.user_id, row]))
    const first = byUser.get(stored[0]!.userId)!
    expect(first.status).toBe('used')
    expect(first.last_use).not.toBe('')
    expect(first.first_use).toBe(first.last_use)
    expect(first.bundle).toBe('written')
    expect(first.legacy_key).toBe('absent')
    expect(byUser.get(stored[1]!.userId)!.legacy_key).toBe('present')
    expect(byUser.get(stored[3]!.userId)!.status).toBe('not used')
    expect(byUser.get(stored[5]!.userId)!.status).toBe('revoked')

    // A later use moves last_use; first_use stays what the first check saw.
    await new Promise((resolve) => setTimeout(resolve, 20))
    await useToken(site, stored[0]!)
    for (const token of stored.slice(3, 5)) await useToken(site, token)
    const met = await runCliJson<AdoptionResult>([
      'adoption',
      '--out',
      out,
      '--ckan-ini',
      site.ckanIni,
      '--require',
      '95',
    ])
    expect(met.exitCode, met.stdout).toBe(0)
    expect(met.json.result).toMatchObject({percentUsed: 100, required: {met: true, percent: 95}})
    const again = parse(await readFile(join(out, 'adoption-report.csv'), 'utf8'), {bom: true, columns: true}) as Array<
      Record<string, string>
    >
    const firstAgain = again.find((row) => row.user_id === stored[0]!.userId)!
    expect(firstAgain.first_use).toBe(first.first_use)
    expect(firstAgain.last_use! > first.last_use!).toBe(true)

    const written = [
      none.stdout,
      gated.stdout,
      gated.stderr,
      met.stdout,
      await readFile(join(out, 'adoption-report.csv'), 'utf8'),
      await readFile(join(out, 'adoption-seen.jsonl'), 'utf8'),
    ].join('\n')
    for (const token of stored) {
      expect(written.includes(token.token)).toBe(false)
      expect(written.includes(token.jti)).toBe(false)
    }
  }, 60_000)
})

describe('adoption: bad input', () => {
  it('refuses a --require that is not a percentage in one line (exit 7)', async () => {
    const dir = await tempDir()
    const run = await runCliJson(['adoption', '--out', dir, '--require', '120%'])
    expect(run.exitCode).toBe(7)
    expect(run.json.error?.message).toContain('--require "120%" is not a percentage')
  })
})
