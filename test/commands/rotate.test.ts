import {parse} from 'csv-parse/sync'
import {readFile} from 'node:fs/promises'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'

import {readAccessBundle} from '../../src/lib/bundle/bundle-writer.js'
import {neutraliseCell} from '../../src/lib/fs/csv-report.js'
import {Secret} from '../../src/lib/secret.js'
import type {AdoptionResult} from '../../src/lib/workflows/adoption.js'
import type {RotateResult} from '../../src/lib/workflows/rotate.js'
import {callWith, migratedSite, runTokensInCkan, serviceTokens, type StoredLine} from '../helpers/rotation.js'
import {runCli, runCliJson} from '../helpers/run-cli.js'
import {readJsonLines} from '../helpers/run-state.js'
import {querySite, tempDir} from '../helpers/site-commands.js'
import {startTestSite} from '../helpers/test-site.js'

const DAY = 86_400_000

describe.each(['2.9', '2.10', '2.11'] as const)('rotate on CKAN %s', (version) => {
  it('gives successors exactly once, rebundles, switches service configs, and revokes predecessors only when used or past the grace period', async () => {
    // 2.11: the expire_api_token plugin is on, so --expiring-within has an exp to read.
    const expiring = version === '2.11'
    const site = await startTestSite({apiTokenLines: false, expireApiToken: expiring, users: 30, version: '2.9'})
    const out = join(await tempDir('ckan-migrate-rotate-'), 'run')
    const before = await migratedSite(site, out, {
      expiring,
      issueExtra: expiring ? ['--expires-in', '10', '--unit', 'day'] : [],
      limit: 4,
      version,
    })
    const people = before.filter((token) => token.source === 'issue-tokens')
    expect(people).toHaveLength(4)
    expect(before.filter((token) => token.source === 'rewrite-config')).toHaveLength(2)
    const admin = ['--api-key-file', site.apiKeyFile]
    const select = expiring ? ['--expiring-within', '30d'] : ['--all']

    const dry = await runCliJson<RotateResult>(['rotate', '--out', out, ...admin, ...select, '--dry-run'])
    expect(dry.exitCode, dry.stdout).toBe(0)
    // Services' tokens live 365 days: --expiring-within 30d leaves them alone.
    expect(dry.json.result?.counts).toEqual(expiring ? {kept: 2, wouldRotate: 4} : {wouldRotate: 6})
    expect(await readJsonLines<StoredLine>(join(out, 'tokens.jsonl'))).toHaveLength(6)

    const rotated = await runCliJson<RotateResult>(['rotate', '--out', out, ...admin, ...select])
    expect(rotated.exitCode, rotated.stdout).toBe(0)
    expect(rotated.json.result?.counts.rotated).toBe(expiring ? 4 : 6)
    expect(rotated.json.result?.bundlesWritten).toBe(4)
    const stored = await readJsonLines<StoredLine>(join(out, 'tokens.jsonl'))
    const successors = stored.filter((token) => token.predecessorJti)
    expect(successors).toHaveLength(expiring ? 4 : 6)
    for (const token of people) {
      const successor = successors.find((entry) => entry.predecessorJti === token.jti)!
      expect(successor.userId).toBe(token.userId)
      // The predecessor keeps working during the grace period.
      expect(await callWith(site, token.token, token.userName)).toBe(200)
      if (expiring) expect(Date.parse(successor.expiresAt!) - Date.now()).toBeGreaterThan(360 * DAY)
      // The fresh bundle holds the successor, under the password passwords.csv lists now.
      const rows = parse(await readFile(join(out, 'bundles', 'passwords.csv'), 'utf8'), {
        bom: true,
        columns: true,
      }) as Array<Record<string, string>>
      // Cells a spreadsheet would run as formulas carry a leading quote (the seeds have such names).
      const row = rows.find((entry) => entry.user === neutraliseCell(token.userName))
      expect(row).toBeDefined()
      const bundle = await readAccessBundle(join(out, 'bundles', row!.file!), new Secret(row!.password!))
      expect(bundle.token.reveal()).toBe(successor.token)
    }
    const config = await serviceTokens(site)
    if (!expiring) {
      for (const service of ['xloader', 'datapusher']) {
        const successor = successors.find((entry) => entry.service === service)!
        expect(successor.source).toBe('rewrite-config')
        expect(config[service]).toBe(successor.token)
      }
    }
    // Every user of the run: the predecessor and exactly one successor in CKAN, both in the store.
    const inCkan = await runTokensInCkan(site, out)
    for (const token of people) expect(inCkan.get(token.userId)).toHaveLength(2)

    // A rerun makes no second successor.
    const again = await runCliJson<RotateResult>(['rotate', '--out', out, ...admin, ...select])
    expect(again.json.result?.counts.pending).toBe(expiring ? 4 : 6)
    expect(await readJsonLines<StoredLine>(join(out, 'tokens.jsonl'))).toHaveLength(stored.length)

    // Two people's scripts and the services switch: real calls move the successors' last_access
    // (and prove they work).
    for (const token of people.slice(0, 2)) {
      const successor = successors.find((entry) => entry.predecessorJti === token.jti)!
      expect(await callWith(site, successor.token, token.userName)).toBe(200)
    }
    for (const service of ['xloader', 'datapusher'])
      expect(await callWith(site, config[service]!, site.siteUserName)).toBe(200)

    const finish = await runCliJson<RotateResult>(['rotate', '--out', out, ...admin, '--finish', '--grace', '14d'])
    expect(finish.exitCode, finish.stdout).toBe(0)
    expect(finish.json.result?.counts).toMatchObject({held: 2, predecessorRevoked: expiring ? 2 : 4})
    expect(await callWith(site, people[0]!.token, people[0]!.userName)).toBe(403)
    expect(await callWith(site, people[2]!.token, people[2]!.userName)).toBe(200)

    const adoption = await runCliJson<AdoptionResult>(['adoption', '--out', out, '--ckan-ini', site.ckanIni])
    expect(adoption.json.result?.counts).toMatchObject({people: 4, rotationsPending: 2, used: 2})

    const late = await runCliJson<RotateResult>(['rotate', '--out', out, ...admin, '--finish', '--grace', '0d'])
    expect(late.json.result?.counts).toMatchObject({predecessorRevoked: 2})
    // Now every user of the run has exactly one live token of the run, the successor, and it works.
    const after = await runTokensInCkan(site, out)
    for (const token of people) {
      const successor = successors.find((entry) => entry.predecessorJti === token.jti)!
      expect(after.get(token.userId)).toEqual([successor.jti])
    }
    const verified = await runCli(['verify', '--out', out])
    expect(verified.exitCode, verified.stdout).toBe(0)

    const written = [
      dry.stdout,
      rotated.stdout,
      finish.stdout,
      late.stdout,
      await readFile(join(out, 'rotate-report.csv'), 'utf8'),
      await readFile(join(out, 'rotate-finish-report.csv'), 'utf8'),
      await readFile(join(out, 'journal.jsonl'), 'utf8'),
    ].join('\n')
    for (const token of stored) {
      expect(written.includes(token.token)).toBe(false)
      expect(written.includes(token.jti)).toBe(false)
    }
    expect((await querySite(site, 'SELECT 1 FROM api_token')).length).toBeGreaterThan(0)
  }, 120_000)
})

describe('rotate: bad input', () => {
  it('refuses a duration it cannot read in one line (exit 7)', async () => {
    const dir = await tempDir()
    const run = await runCliJson(['rotate', '--out', dir, '--older-than', '1y'])
    expect(run.exitCode).toBe(7)
    expect(run.json.error?.message).toBe('--older-than "1y" is not a duration')
  })
})
