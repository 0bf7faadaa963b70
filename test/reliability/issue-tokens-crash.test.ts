import {mkdtemp, readdir, readFile, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {describe, expect, it, onTestFinished} from 'vitest'

import {mulberry32} from '../../src/sandbox/faults.js'
import {issueTokensArgs} from '../helpers/site-commands.js'
import {runCli} from '../helpers/run-cli.js'
import {type ChildRun, runCliChild} from '../helpers/run-cli-child.js'
import {REAL_POSTGRES_URL} from '../helpers/test-database.js'
import {expectOneStoredTokenPerSelectedUser, readJsonLines} from '../helpers/run-state.js'
import {startTestSite} from '../helpers/test-site.js'

/**
 * kill -9 at random (seeded) moments while tokens are being issued, each followed by a resume with
 * the same --out, under latency and the faults that leave a create's outcome unknown (commit then
 * hang, reset after the write). Afterwards: exactly one token of the run per selected user, all of
 * them in the store, all working, and no secret in anything the runs wrote. 1200 users (about 450
 * selected) on PostgreSQL, 400 on PGlite (slower, one session), so the file stays under two minutes.
 */
describe('issue-tokens after kill -9', () => {
  it('ends with exactly one stored, working token per selected user after 10+ kills and resumes', async () => {
    const site = await startTestSite({
      faults: {hangAfterCommit: 0.01, jitterMs: 10, latencyMs: 15, resetAfterWrite: 0.02, seed: 'kill-9'},
      users: REAL_POSTGRES_URL ? 1200 : 400,
      version: '2.9',
    })
    const dir = await mkdtemp(join(tmpdir(), 'ckan-migrate-crash-'))
    onTestFinished(() => rm(dir, {force: true, recursive: true}))
    const out = join(dir, 'run')
    const journal = join(out, 'journal.jsonl')
    const args = issueTokensArgs(site, out, '--concurrency', '4', '--timeout', '1')
    const random = mulberry32(20_261_122)
    const outputs: string[] = []

    let kills = 0
    for (let attempt = 0; attempt < 25 && kills < 12; attempt += 1) {
      const run = await runCliChild(args, {
        interrupt: {delayMs: Math.floor(random() * 200), journal, signal: 'SIGKILL'},
      })
      outputs.push(run.output)
      if (run.signalled && run.signal === 'SIGKILL') kills += 1
      else if (run.code === 0) break
    }
    expect(kills).toBeGreaterThanOrEqual(10)

    let final: ChildRun | undefined
    for (let attempt = 0; attempt < 3; attempt += 1) {
      final = await runCliChild(args)
      outputs.push(final.output)
      if (final.code === 0) break
      expect(final.code, final.output).toBe(11)
    }
    expect(final?.code, final?.output).toBe(0)

    site.emulator.setFaults({})
    const stored = await expectOneStoredTokenPerSelectedUser(site, out)
    // The kills left creates whose outcome was unknown; the resumes reconciled them.
    const entries = await readJsonLines<{kind: string}>(journal)
    expect(entries.filter((entry) => entry.kind === 'create-settled').length).toBeGreaterThan(0)

    const verified = await runCli(['verify', '--out', out, '--concurrency', '8'])
    expect(verified.exitCode, verified.stdout).toBe(0)
    expect(verified.stdout).toContain(`${stored.length} of ${stored.length} tokens work`)

    // The run's page, made to be mailed around, is scanned with everything else.
    const page = join(dir, 'run.html')
    const report = await runCli(['report', out, '--html', page])
    expect(report.exitCode, report.stdout).toBe(0)
    expect(report.stdout).toMatch(/: FINISHED/)
    const files = await readdir(out)
    const written = [
      ...outputs,
      verified.stdout,
      verified.stderr,
      report.stdout,
      await readFile(page, 'utf8'),
      ...(await Promise.all(
        files
          .filter((name) => name.endsWith('.csv') || name === 'journal.jsonl')
          .map((name) => readFile(join(out, name), 'utf8')),
      )),
    ].join('\n')
    for (const token of stored) {
      expect(written.includes(token.jti)).toBe(false)
      expect(written.includes(token.token)).toBe(false)
    }
    expect(written.includes(site.adminCredential.reveal())).toBe(false)
  }, 240_000)
})
