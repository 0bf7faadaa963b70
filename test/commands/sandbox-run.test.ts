import {mkdtemp, readdir, readFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'

import {openRunFolder} from '../../src/lib/run/run-folder.js'
import {type RehearsalResult, rehearseMigration} from '../../src/sandbox/rehearse-migration.js'
import {runCliJson} from '../helpers/run-cli.js'
import {REAL_POSTGRES_URL} from '../helpers/test-database.js'

/** Every file below `dir`, as text (bundles are binary: their bytes as latin1 are still searched). */
async function everyFileText(dir: string): Promise<string> {
  const entries = await readdir(dir, {recursive: true, withFileTypes: true})
  const texts = await Promise.all(
    entries.filter((entry) => entry.isFile()).map((entry) => readFile(join(entry.parentPath, entry.name), 'latin1')),
  )
  return texts.join('\n')
}

describe('ckan-migrate sandbox --run', () => {
  it('rehearses the whole runbook on a 2.9 site, through 2.10 and 2.11, without a client ever losing access', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sandbox-run-'))
    const args = [
      'sandbox',
      '--run',
      '--users',
      '150',
      '--dir',
      dir,
      ...(REAL_POSTGRES_URL ? ['--database-url', REAL_POSTGRES_URL] : []),
    ]
    const {exitCode, json, stderr, stdout} = await runCliJson<RehearsalResult>(args)
    expect(exitCode, stderr).toBe(0)
    const result = json.result!
    expect(result.ok).toBe(true)
    expect(result.steps.map((step) => step.name)).toEqual([
      'start the site',
      'backup',
      'probe before the migration',
      'audit',
      'fix duplicate emails',
      'rewrite-config --dry-run',
      'rewrite-config',
      'issue-tokens --dry-run',
      'issue-tokens',
      'verify',
      'bundle',
      'audit again',
      'adoption',
      'upgrade to 2.10',
      'upgrade to 2.11',
      'purge-keys',
      'rotate',
      'rotate --finish',
      'report --html',
    ])
    for (const step of result.steps) expect(step.ok, `${step.name}: ${step.detail}`).toBe(true)
    expect(result.steps.find((step) => step.name === 'audit')?.detail).toMatch(/^NOT READY/)
    expect(result.steps.find((step) => step.name === 'audit again')?.detail).toMatch(/^READY/)
    expect(result.continuity.failures).toBe(0)
    expect(result.continuity.calls).toBeGreaterThan(100)
    // A small site: every key holder and both services called (a large one takes them in turn).
    const switched = /(\d+)\/(\d+) clients switched/.exec(result.steps.find((step) => step.name === 'bundle')!.detail)
    expect(result.continuity.clientsChecked).toBe(Number(switched![2]) + 2)
    expect(result.continuity.phases.map((phase) => phase.name)).toEqual(
      expect.arrayContaining([
        'probe before the migration',
        'upgrade to 2.10',
        'upgrade to 2.11',
        'purge-keys',
        'rotate --finish',
      ]),
    )

    // Nothing secret reaches the output: the tokens of the run, the bundle passwords.
    const run = await openRunFolder(result.paths.runFolder, {create: false})
    const secrets = (await run.readTokens()).flatMap((token) => [token.token.reveal(), token.jti.reveal()])
    const passwords = (await readFile(result.paths.passwords!, 'utf8'))
      .split('\n')
      .slice(1)
      .map((line) => line.split(',').at(-1)!.trim())
      .filter((password) => password.length > 0)
    expect(secrets.length).toBeGreaterThan(10)
    expect(passwords.length).toBeGreaterThan(5)
    for (const secret of [...secrets, ...passwords]) {
      expect(stdout).not.toContain(secret)
      expect(stderr).not.toContain(secret)
    }
    // …nor the journal and the reports; the token store and passwords.csv are where they live.
    const journal = await readFile(run.file('journal.jsonl'), 'utf8')
    const report = await readFile(result.paths.report!, 'utf8')
    // …nor the two pages (readiness and run), which are made to be mailed around.
    const pages = [
      await readFile(result.paths.readinessPage!, 'utf8'),
      await readFile(result.paths.runPage!, 'utf8'),
    ].join('\n')
    expect(pages).toContain('NOT READY')
    expect(pages).toContain('FINISHED')
    for (const secret of secrets) {
      expect(journal).not.toContain(secret)
      expect(report).not.toContain(secret)
      expect(pages).not.toContain(secret)
    }
    for (const password of passwords) expect(pages).not.toContain(password)
    // The summary explains why the report has fewer rows than the site has users.
    const reportRows = report.split('\n').filter((line) => line.trim() !== '').length - 1
    expect(result.selection.reportRows).toBe(reportRows)
    expect(result.selection.siteUsers).toBeGreaterThan(reportRows)
    // The bundles are encrypted: no token is readable in them.
    const bundles = await everyFileText(result.paths.bundles!)
    for (const secret of secrets)
      expect(bundles.includes(secret), 'a token readable inside the bundle folder').toBe(false)
    // The rotation gave every person of the run a successor, and --finish revoked the predecessors in use.
    const tokens = await run.readTokens()
    const successors = tokens.filter((token) => token.predecessorJti)
    expect(successors.length).toBeGreaterThan(10)
    const predecessors = new Set(successors.map((token) => token.predecessorJti!.reveal()))
    expect(tokens.filter((token) => predecessors.has(token.jti.reveal()) && token.revokedAt).length).toBeGreaterThan(10)
  }, 240_000)

  it('on a site larger than a probe round, holds the people the probe called since the switch to having used their token', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sandbox-run-rounds-'))
    // 150 users with rounds of 10 people: by the adoption step the probe has called only some of
    // the key holders, as at 100,000 users with rounds of 1,000.
    const result = await rehearseMigration({
      databaseUrl: REAL_POSTGRES_URL,
      dir,
      probeUsersPerRound: 10,
      seed: 'rounds',
      users: 150,
    })
    const adoption = result.steps.find((step) => step.name === 'adoption')!
    expect(adoption.ok, adoption.detail).toBe(true)
    const reached = /The probe has called (\d+) of (\d+) people since the switch/.exec(adoption.detail)
    expect(reached, adoption.detail).not.toBeNull()
    expect(Number(reached![1])).toBeGreaterThan(0)
    expect(Number(reached![1])).toBeLessThan(Number(reached![2]))
    const used = Number(/^(\d+) of \d+ users have used their token/.exec(adoption.detail)![1])
    expect(used).toBeGreaterThanOrEqual(Number(reached![1]))
    expect(
      result.ok,
      result.steps
        .filter((step) => !step.ok)
        .map((step) => step.detail)
        .join('\n'),
    ).toBe(true)
  }, 240_000)
})
