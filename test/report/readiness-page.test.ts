import {createServer} from 'node:http'
import {readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {pathToFileURL} from 'node:url'
import pg from 'pg'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {EXIT_CODES} from '../../src/lib/errors.js'
import {createCkanSchema} from '../../src/sandbox/ckan-schema.js'
import {seedCkanSite} from '../../src/sandbox/ckan-site-seeder.js'
import {fingerprintOf} from '../../src/lib/secret.js'
import type {AuditResult} from '../../src/lib/workflows/audit.js'
import {BROWSER_TESTS, chartNumbers, type ReportDom, readReportDom, withPage} from '../helpers/browser.js'
import {runCliJson} from '../helpers/run-cli.js'
import {querySite, tempDir} from '../helpers/site-commands.js'
import {createTestDatabase, type TestDatabase} from '../helpers/test-database.js'

const INI = new URL('../fixtures/audit/legacy-2.9.ini', import.meta.url).pathname
/** A sysadmin with a key (so the audit samples it) whose name is markup that would load a remote image. */
const HOSTILE_NAME = '<img src="http://127.0.0.1:9/x.png">'
const SOON = 4
const RECENT = 7

let database: TestDatabase
let page: string
let result: AuditResult
let dom: ReportDom
let requests: string[]

/**
 * One seeded CKAN 2.9 site, audited with --html and --json in one run; the page is then read in
 * headless Chromium (file://, network and JavaScript off) and compared with the --json result.
 */
describe.runIf(BROWSER_TESTS)('audit --html: the readiness page in a real browser', () => {
  beforeAll(async () => {
    database = await createTestDatabase({autoRelease: false})
    const client = new pg.Client({connectionString: database.url})
    await client.connect()
    await createCkanSchema(client, '2.9', {harvest: true})
    await seedCkanSite(client, {harvestSources: true, seed: 'readiness', siteId: 'default', users: 400, version: '2.9'})
    await client.query(
      `INSERT INTO "user" (id, name, apikey, created, password, email, sysadmin, state)
       VALUES ('hostile-admin', $1, 'c0ffee00-1b2c-4d5e-8f90-0123456789ab', now(), 'x', 'hostile@example.org', true, 'active')`,
      [HOSTILE_NAME],
    )
    // Tokens that expire in a few days, and key holders seen in the activity stream this week.
    await client.query(
      `UPDATE api_token SET plugin_extras = jsonb_build_object('expire_api_token', jsonb_build_object('exp',
         to_char((now() AT TIME ZONE 'UTC') + interval '3 days', 'YYYY-MM-DD"T"HH24:MI:SS.US')))
       WHERE id IN (SELECT id FROM api_token ORDER BY id LIMIT ${SOON})`,
    )
    await client.query(
      `INSERT INTO activity (id, "timestamp", user_id, object_id, activity_type)
       SELECT 'act-' || id, (now() AT TIME ZONE 'UTC') - interval '2 days', id, id, 'changed user'
       FROM (SELECT id FROM "user" WHERE state = 'active' AND apikey <> '' AND name <> 'default' ORDER BY id LIMIT ${RECENT}) u`,
    )
    await client.end()
    const dir = await tempDirForSuite()
    page = join(dir, 'readiness.html')
    const run = await runCliJson<AuditResult>([
      'audit',
      '--database-url',
      database.url,
      '--ckan-ini',
      INI,
      '--html',
      page,
    ])
    expect(run.exitCode, run.stdout).toBe(EXIT_CODES.blockersFound)
    result = run.json.result!
    ;({dom, requests} = await withPage(page, async (loaded) => {
      const read = await readReportDom(loaded)
      await loaded.screenshot('readiness.png')
      return {dom: read, requests: [...loaded.requests]}
    }))
  })
  afterAll(() => database?.release())

  it('shows the verdict for the target and each blocker with its fix', () => {
    expect(dom.status).toBe(result.verdict.status)
    // No --target: the newest released CKAN.
    expect(dom.statusText).toMatch(/^NOT READY\s+for CKAN 2\.11$/)
    const blockers = result.findings.filter((finding) => finding.severity === 'blocker')
    expect(blockers.length).toBe(result.verdict.blockers)
    expect(blockers.length).toBeGreaterThan(0)
    for (const finding of blockers) expect(dom.text).toContain(`Fix: ${finding.fix}`)
  })

  it('shows every count as --json gives it, and every chart with a table of its numbers', () => {
    const {summary} = result
    expect(dom.counts).toEqual({
      'api-tokens': summary.apiTokens.total,
      'legacy-keys': summary.legacyKeys.total,
      'never-used': summary.apiTokens.neverUsed,
      sysadmins: summary.users.sysadmins,
      users: summary.users.total,
    })
    expect(dom.charts.map((chart) => chart.id)).toEqual([
      'credentials-people',
      'credentials-sysadmins',
      'key-holder-activity',
      'token-expiry',
    ])
    for (const chart of dom.charts) {
      expect(chart.hasSvg, chart.id).toBe(true)
      expect(chart.tables, chart.id).toBe(1)
      expect(chart.rows.length, chart.id).toBeGreaterThan(0)
    }
    const breakdown = result.breakdown!
    for (const [id, counts] of [
      ['credentials-people', breakdown.credentials.people],
      ['credentials-sysadmins', breakdown.credentials.sysadmins],
    ] as const) {
      expect(chartNumbers(dom, id)).toEqual({
        'key and token': counts.both,
        'legacy key only': counts.keyOnly,
        neither: counts.neither,
        'token only': counts.tokenOnly,
      })
    }
    const {buckets} = breakdown.keyHolderActivity
    expect(chartNumbers(dom, 'key-holder-activity')).toEqual({
      '31–90 days ago': buckets.days90,
      '91–365 days ago': buckets.days365,
      'in the last 30 days': buckets.days30,
      'more than a year ago': buckets.older,
      'nothing recorded': buckets.never,
    })
    const expiry = breakdown.tokenExpiry
    expect(chartNumbers(dom, 'token-expiry')).toEqual({
      expired: expiry.expired,
      'in 8–30 days': expiry.days30,
      later: expiry.later,
      never: expiry.never,
      'within 7 days': expiry.days7,
    })
  })

  it('counts what the database holds: credential states, recent activity, tokens about to expire', async () => {
    const breakdown = result.breakdown!
    const [truth] = await querySite<{both: number; holders: number; key_only: number}>(
      {databaseUrl: database.url},
      `SELECT count(*) FILTER (WHERE apikey <> '' AND id IN (SELECT user_id FROM api_token))::int AS both,
              count(*) FILTER (WHERE apikey <> '' AND id NOT IN (SELECT user_id FROM api_token))::int AS key_only,
              count(*) FILTER (WHERE apikey <> '')::int AS holders
       FROM "user" WHERE state = 'active' AND name <> 'default'`,
    )
    const {people, sysadmins} = breakdown.credentials
    expect(people.both + sysadmins.both).toBe(truth!.both)
    expect(people.keyOnly + sysadmins.keyOnly).toBe(truth!.key_only)
    expect(Object.values(breakdown.keyHolderActivity.buckets).reduce((a, b) => a + b, 0)).toBe(truth!.holders)
    expect(breakdown.keyHolderActivity.buckets.days30).toBe(RECENT)
    expect(breakdown.keyHolderActivity.basis.join(' ')).toMatch(/activity/)
    expect(breakdown.tokenExpiry.days7).toBe(SOON)
    expect(breakdown.tokenExpiry.total).toBe(result.summary.apiTokens.total)
    // Services: the fixture enables datapusher and xloader without their token settings.
    const enabled = breakdown.services.filter((service) => service.enabled)
    expect(enabled.map((service) => [service.service, service.rewriteConfig])).toEqual([
      ['datapusher', 'writes-token'],
      ['xloader', 'writes-token'],
    ])
    expect(dom.text).toMatch(/datapusher\s+yes/)
  })

  it('loads nothing but itself, needs no script, shows hostile names as text, and holds no key or fingerprint', async () => {
    expect(requests).toEqual([pathToFileURL(page).href])
    expect(dom.scripts).toBe(0)
    expect(dom.text).toContain(HOSTILE_NAME)
    const text = await readFile(page, 'utf8')
    expect(text).not.toContain(HOSTILE_NAME)
    expect(Buffer.byteLength(text)).toBe(result.html!.bytes)
    const keys = await querySite<{apikey: string}>(
      {databaseUrl: database.url},
      `SELECT apikey FROM "user" WHERE apikey <> ''`,
    )
    expect(keys.length).toBeGreaterThan(100)
    for (const {apikey} of keys) {
      expect(text.includes(apikey)).toBe(false)
      expect(text.includes(fingerprintOf(apikey))).toBe(false)
    }
  })

  it('its Content-Security-Policy stops a remote load smuggled into the page (and without it the load happens)', async () => {
    let hits = 0
    const server = createServer((_request, response) => {
      hits += 1
      response.end('x')
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    try {
      const {port} = server.address() as {port: number}
      const smuggled = `<img src="http://127.0.0.1:${port}/beacon.png"><link rel="stylesheet" href="http://127.0.0.1:${port}/x.css">`
      const original = await readFile(page, 'utf8')
      const dir = await tempDir()
      const withCsp = join(dir, 'with-csp.html')
      const withoutCsp = join(dir, 'without-csp.html')
      await writeFile(withCsp, original.replace('<body>', `<body>${smuggled}`))
      await writeFile(
        withoutCsp,
        original.replace(/<meta http-equiv="Content-Security-Policy"[^>]*>/, '').replace('<body>', `<body>${smuggled}`),
      )
      const blocked = await withPage(withCsp, async (loaded) => loaded.console.join('\n'), {network: true})
      expect(hits).toBe(0)
      expect(blocked).toMatch(/Content Security Policy/)
      await withPage(withoutCsp, async () => {}, {network: true})
      expect(hits).toBeGreaterThan(0)
    } finally {
      server.close()
    }
  })
})

/** tempDir() removes its folder when the current test finishes; a suite's folder lives until the process ends. */
async function tempDirForSuite(): Promise<string> {
  const {mkdtemp} = await import('node:fs/promises')
  const {tmpdir} = await import('node:os')
  return mkdtemp(join(tmpdir(), 'ckan-migrate-readiness-'))
}
