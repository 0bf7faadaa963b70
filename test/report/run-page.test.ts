import {readFile} from 'node:fs/promises'
import {join} from 'node:path'
import {pathToFileURL} from 'node:url'
import {describe, expect, it} from 'vitest'

import {EXIT_CODES} from '../../src/lib/errors.js'
import {openRunFolder} from '../../src/lib/run/run-folder.js'
import type {RunReportResult} from '../../src/lib/workflows/report.js'
import {BROWSER_TESTS, chartNumbers, readReportDom, withPage} from '../helpers/browser.js'
import {runCli, runCliJson} from '../helpers/run-cli.js'
import {runCliChild} from '../helpers/run-cli-child.js'
import {readJsonLines, type StoredTokenLine} from '../helpers/run-state.js'
import {issueTokensArgs, tempDir} from '../helpers/site-commands.js'
import {startTestSite} from '../helpers/test-site.js'

/** Reads `file` in headless Chromium (file://, network and JavaScript off): the DOM, the requests, a screenshot. */
async function inBrowser(file: string, screenshot: string) {
  return withPage(file, async (page) => {
    const dom = await readReportDom(page)
    await page.screenshot(screenshot)
    return {dom, requests: [...page.requests]}
  })
}

describe.runIf(BROWSER_TESTS)('report RUN_DIR --html: the run page in a real browser', () => {
  it('names issue-tokens unfinished after a kill -9, with the command that resumes it; FINISHED after the resume', async () => {
    const site = await startTestSite({faults: {latencyMs: 25}, users: 100, version: '2.9'})
    const dir = await tempDir()
    const out = join(dir, 'run')
    const args = issueTokensArgs(site, out, '--concurrency', '2')
    // Killed once a few tokens are in the store (a token line is about 600 bytes).
    const killed = await runCliChild(args, {
      interrupt: {afterBytes: 3000, delayMs: 0, journal: join(out, 'tokens.jsonl'), signal: 'SIGKILL'},
    })
    expect(killed.signalled && killed.signal, killed.output).toBe('SIGKILL')

    // Half done: the journal has run-started without run-finished, the lock is stale.
    const half = join(dir, 'half.html')
    const first = await runCliJson<RunReportResult>(['report', out, '--html', half])
    expect(first.exitCode, first.stdout).toBe(0)
    const report = first.json.result!
    expect(report.state).toBe('unfinished')
    expect(report.lock).toMatchObject({alive: false, command: 'issue-tokens'})
    expect(report.unfinished.map((command) => command.command)).toEqual(['issue-tokens'])
    const resume = report.unfinished[0]!.resume
    expect(resume).toContain(`ckan-migrate issue-tokens --out ${out} --ckan-url ${site.ckanUrl} --api-key-file`)
    const stored = await readJsonLines<StoredTokenLine>(join(out, 'tokens.jsonl'))
    expect(report.tokens.issued).toBe(stored.length)
    expect(report.tokens.issued).toBeGreaterThan(0)

    const halfPage = await inBrowser(half, 'run-unfinished.png')
    expect(halfPage.requests).toEqual([pathToFileURL(half).href])
    expect(halfPage.dom.status).toBe('unfinished')
    expect(halfPage.dom.statusText).toMatch(/^UNFINISHED/)
    expect(halfPage.dom.text).toContain(resume)
    expect(halfPage.dom.text).toMatch(/issue-tokens started at .* and never finished/)
    expectCountsAndCharts(halfPage.dom, report)

    // The resume, a verify, and the page again: finished, every number still the --json one.
    const resumed = await runCli(args)
    expect(resumed.exitCode, resumed.stdout).toBe(0)
    const verified = await runCli(['verify', '--out', out])
    expect(verified.exitCode, verified.stdout).toBe(0)
    const done = join(dir, 'done.html')
    const second = await runCliJson<RunReportResult>(['report', out, '--html', done])
    const final = second.json.result!
    expect(final.state).toBe('finished')
    expect(final.unfinished).toEqual([])
    expect(final.verify.ok).toBe(final.verify.checked)
    expect(final.verify.checked).toBe(final.tokens.issued)
    const donePage = await inBrowser(done, 'run-finished.png')
    expect(donePage.requests).toEqual([pathToFileURL(done).href])
    expect(donePage.dom.status).toBe('finished')
    expect(donePage.dom.statusText).toMatch(/^FINISHED/)
    expectCountsAndCharts(donePage.dom, final)
    expect(chartNumbers(donePage.dom, 'verify-results')).toEqual({works: final.verify.ok})

    // No secret in the pages or in what report printed: the run's tokens and jtis, the admin's credential.
    const tokens = await readJsonLines<StoredTokenLine>(join(out, 'tokens.jsonl'))
    const written = [
      await readFile(half, 'utf8'),
      await readFile(done, 'utf8'),
      first.stdout,
      first.stderr,
      second.stdout,
      second.stderr,
    ].join('\n')
    expect(tokens.length).toBe(final.tokens.issued)
    for (const token of tokens) {
      expect(written.includes(token.token)).toBe(false)
      expect(written.includes(token.jti)).toBe(false)
    }
    expect(written.includes(site.adminCredential.reveal())).toBe(false)
  }, 300_000)

  it('refuses a folder that is not a run folder, and --html naming a folder, in one line with exit 7', async () => {
    const dir = await tempDir()
    const notRun = await runCliJson(['report', dir])
    expect(notRun.exitCode).toBe(EXIT_CODES.badInput)
    expect(notRun.json.error?.message).toMatch(/is not a ckan-migrate run folder/)
    const run = await openRunFolder(join(dir, 'run'), {create: true, site: {ckanUrl: 'https://data.example.org'}})
    const empty = await runCliJson<RunReportResult>(['report', run.path, '--html', dir])
    expect(empty.exitCode).toBe(EXIT_CODES.badInput)
    expect(empty.json.error?.message).toBe(`--html ${dir} is a folder, not a file`)
    // A run folder nothing has written to yet is a state, not an error.
    const fresh = await runCliJson<RunReportResult>(['report', run.path])
    expect(fresh.exitCode).toBe(0)
    expect(fresh.json.result!.state).toBe('empty')
  })
})

function expectCountsAndCharts(dom: Awaited<ReturnType<typeof readReportDom>>, report: RunReportResult): void {
  expect(dom.counts).toEqual({
    bundles: report.bundles.files,
    retries: report.tokens.retries,
    'tokens-issued': report.tokens.issued,
    'unknown-outcomes': report.tokens.unknownOutcomes.settled,
    'users-failed': report.tokens.usersFailed,
    'verified-ok': report.verify.ok,
  })
  for (const chart of dom.charts) {
    expect(chart.hasSvg, chart.id).toBe(true)
    expect(chart.tables, chart.id).toBe(1)
  }
  const timeline = dom.charts.find((chart) => chart.id === 'tokens-over-time')!
  expect(timeline.header).toEqual(['from (UTC)', 'issued', 'retried', 'failed'])
  const column = (index: number) => timeline.rows.reduce((sum, row) => sum + Number(row[index]!.replaceAll(',', '')), 0)
  expect(timeline.rows.length).toBe(report.tokens.timeline.length)
  expect(column(1)).toBe(report.tokens.issued)
  expect(column(2)).toBe(report.tokens.retries)
  expect(chartNumbers(dom, 'user-outcomes')).toEqual({
    'failed, no token': report.tokens.usersFailed,
    'have a token': report.tokens.users,
    skipped: Object.values(report.tokens.skipped).reduce((sum, count) => sum + count, 0),
  })
}
