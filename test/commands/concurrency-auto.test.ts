import {join} from 'node:path'
import {describe, expect, it} from 'vitest'

import type {IssueTokensResult} from '../../src/lib/workflows/issue-tokens.js'
import type {VerifyResult} from '../../src/lib/workflows/verify.js'
import {runCli, runCliJson} from '../helpers/run-cli.js'
import {expectOneStoredTokenPerSelectedUser} from '../helpers/run-state.js'
import {issueTokensArgs, tempDir} from '../helpers/site-commands.js'
import {startTestSite} from '../helpers/test-site.js'

/**
 * --concurrency auto (the default) against a site of 2 workers with a backlog of 4 behind them:
 * past 6 requests in flight the emulator answers 502 as nginx would, so a limiter that
 * overshoots shows up as refused requests. The service time (40 ms) is long beside the
 * scheduling noise of a loaded 2-core CI machine, whose delays inflate the idle answer time the
 * latency budget is measured against; on such a machine the limiter may probe one step past the
 * backlog once, take the 502 as the overload signal it is, and back off. What must hold is that
 * it settles within the site's capacity, refusals stay rare, and every user gets one token.
 */
describe('--concurrency auto', () => {
  it('settles between 1 and the backlog bound on a 2-worker site, and the site refuses next to no request', async () => {
    const workers = 2
    const backlog = 4
    const site = await startTestSite({
      faults: {backlog, serviceJitterMs: 8, serviceMs: 40, workers},
      users: 400,
      version: '2.10',
    })
    const out = join(await tempDir(), 'run')
    const issued = await runCliJson<IssueTokensResult>(issueTokensArgs(site, out))
    expect(issued.exitCode).toBe(0)
    const report = issued.json.result!.concurrency
    expect(report).toMatchObject({
      action: 'api_token_create',
      latencyBudget: 2,
      max: 32,
      mode: 'auto',
    })
    const {refused} = site.emulator.stats().capacity
    // Every overload signal it saw was one of the site's refusals (no timeouts), and they were rare.
    expect(report.overloadSignals).toBe(refused)
    expect(refused).toBeLessThanOrEqual(Math.ceil(report.requests * 0.02))
    expect(report.settled).toBeGreaterThanOrEqual(1)
    expect(report.settled).toBeLessThanOrEqual(workers + backlog)
    expect(report.highest).toBeLessThanOrEqual(workers + backlog + 1)
    // It measured the idle answer time and left the start.
    expect(report.latencyMs.idle?.count).toBeGreaterThan(0)
    expect(report.highest).toBeGreaterThanOrEqual(2)
    expect(site.emulator.stats().capacity.maxInService).toBeLessThanOrEqual(workers)
    await expectOneStoredTokenPerSelectedUser(site, out)

    // verify under auto too, and the summary names the limit.
    const verified = await runCli<VerifyResult>(['verify', '--out', out])
    expect(verified.exitCode).toBe(0)
    expect(verified.stdout).toMatch(/Concurrency auto: settled at \d+ \(highest \d+, at most 32, latency budget 2×\)/)
    expect(site.emulator.stats().capacity.refused).toBeLessThanOrEqual(refused + Math.ceil(report.requests * 0.02))
  }, 300_000)

  it('takes a fixed number instead, and refuses anything but auto or 1 to 64 (exit 2)', async () => {
    const site = await startTestSite({faults: {backlog: 0, serviceMs: 5, workers: 1}, users: 30, version: '2.10'})
    const out = join(await tempDir(), 'run')
    const fixed = await runCliJson<IssueTokensResult>(issueTokensArgs(site, out, '--concurrency', '1', '--limit', '5'))
    expect(fixed.exitCode).toBe(0)
    expect(fixed.json.result!.concurrency).toMatchObject({highest: 1, mode: 'fixed', settled: 1})
    expect(site.emulator.stats().capacity.refused).toBe(0)
    for (const bad of [
      ['--concurrency', '0'],
      ['--concurrency', 'lots'],
      ['--latency-budget', '1'],
    ]) {
      const refused = await runCliJson(issueTokensArgs(site, out, ...bad))
      expect(refused.exitCode).toBe(2)
      expect(refused.json.error?.code).toBe('usage')
    }
  }, 120_000)
})
