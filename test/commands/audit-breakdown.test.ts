import {mkdtemp} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import pg from 'pg'
import {describe, expect, it} from 'vitest'

import type {AuditBreakdown} from '../../src/lib/audit/readiness-breakdown.js'
import type {CkanVersion} from '../../src/lib/site/ckan-version.js'
import {createCkanSchema} from '../../src/sandbox/ckan-schema.js'
import {seedCkanSite} from '../../src/sandbox/ckan-site-seeder.js'
import {EXIT_CODES} from '../../src/lib/errors.js'
import type {AuditResult} from '../../src/lib/workflows/audit.js'
import {runCliChild} from '../helpers/run-cli-child.js'
import {runCliJson} from '../helpers/run-cli.js'
import {createTestDatabase} from '../helpers/test-database.js'

/**
 * The readiness page's figures (audit --html) are counted by the audit's census itself. They are
 * checked here against the plain SQL a reader would write for them: active users (the site user
 * apart) by sysadmin, key and token; key holders by the newest of their tokens' last use, their
 * activity rows and (2.10+) user.last_active; tokens by expiry. The site mixes every case.
 */
const TRUTH = (lastActive: boolean) => `
  WITH t AS (SELECT user_id, max(last_access) AS used FROM api_token GROUP BY user_id),
       a AS (SELECT user_id, max("timestamp") AS at FROM activity GROUP BY user_id),
       c AS (SELECT now() AT TIME ZONE 'UTC' AS now_utc),
       s AS (SELECT u.sysadmin IS TRUE AS sysadmin, coalesce(u.apikey, '') <> '' AS has_key,
                    t.user_id IS NOT NULL AS has_tokens,
                    greatest(t.used, a.at${lastActive ? ', u.last_active' : ''}) AS seen
             FROM "user" u LEFT JOIN t ON t.user_id = u.id LEFT JOIN a ON a.user_id = u.id
             WHERE u.state = 'active' AND u.name <> 'default')
  SELECT sysadmin, has_key, has_tokens,
         CASE WHEN seen IS NULL THEN 'never' WHEN seen >= now_utc - interval '30 days' THEN 'days30'
              WHEN seen >= now_utc - interval '90 days' THEN 'days90'
              WHEN seen >= now_utc - interval '365 days' THEN 'days365' ELSE 'older' END AS bucket,
         count(*)::int AS users
  FROM s CROSS JOIN c GROUP BY 1, 2, 3, 4`

const EXPIRY_TRUTH = `
  SELECT CASE WHEN exp IS NULL THEN 'never' WHEN exp < now() AT TIME ZONE 'UTC' THEN 'expired'
              WHEN exp < now() AT TIME ZONE 'UTC' + interval '7 days' THEN 'days7'
              WHEN exp < now() AT TIME ZONE 'UTC' + interval '30 days' THEN 'days30' ELSE 'later' END AS bucket,
         count(*)::int AS tokens
  FROM (SELECT (plugin_extras -> 'expire_api_token' ->> 'exp')::timestamp AS exp FROM api_token) e GROUP BY 1`

async function mixedSite(version: CkanVersion, options: {activity: boolean}) {
  const database = await createTestDatabase()
  const client = new pg.Client({connectionString: database.url})
  await client.connect()
  await createCkanSchema(client, version, {harvest: true})
  await seedCkanSite(client, {seed: `breakdown-${version}`, siteId: 'default', users: 300, version})
  const ages = [2, 45, 200, 800]
  // Tokens last used at each age (and some never), tokens of users without a key, expiries in every bucket.
  await client.query(
    `UPDATE api_token SET last_access = CASE WHEN n % 5 = 4 THEN NULL
            ELSE (now() AT TIME ZONE 'UTC') - (ARRAY[${ages.join(',')}])[n % 5 + 1] * interval '1 day' END,
        plugin_extras = CASE n % 6 WHEN 5 THEN NULL ELSE jsonb_build_object('expire_api_token', jsonb_build_object('exp',
            to_char((now() AT TIME ZONE 'UTC') + (ARRAY[-3, 3, 20, 90, 400])[n % 6 + 1] * interval '1 day', 'YYYY-MM-DD"T"HH24:MI:SS.US'))) END
     FROM (SELECT id AS token_id, row_number() OVER (ORDER BY id) AS n FROM api_token) o WHERE api_token.id = o.token_id`,
  )
  await client.query(
    `INSERT INTO api_token (id, name, user_id, created_at, last_access)
     SELECT 'keyless-' || id, 'script', id, now(), CASE WHEN n % 2 = 0 THEN now() AT TIME ZONE 'UTC' END
     FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM "user"
           WHERE coalesce(apikey, '') = '' AND state = 'active' ORDER BY id LIMIT 9) u`,
  )
  if (options.activity) {
    await client.query(
      `INSERT INTO activity (id, "timestamp", user_id, object_id, activity_type)
       SELECT 'act-' || id || '-' || k, (now() AT TIME ZONE 'UTC') - (ARRAY[${ages.join(',')}])[(n + k) % 4 + 1] * interval '1 day',
              id, id, 'changed user'
       FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM "user" WHERE apikey <> '' ORDER BY id LIMIT 120) u,
            generate_series(0, CASE WHEN n % 5 = 0 THEN 1 ELSE 0 END) AS k
       WHERE n % 3 <> 0`,
    )
  }
  if (version !== '2.9') {
    await client.query(
      `UPDATE "user" SET last_active = (now() AT TIME ZONE 'UTC') - (ARRAY[${ages.join(',')}])[n % 4 + 1] * interval '1 day'
       FROM (SELECT id AS user_id, row_number() OVER (ORDER BY id DESC) AS n FROM "user") o
       WHERE "user".id = o.user_id AND o.n % 7 < 3`,
    )
  }
  const truth = (await client.query(TRUTH(version !== '2.9'))).rows
  const expiry = (await client.query(EXPIRY_TRUTH)).rows
  await client.end()
  return {expiry, truth, url: database.url}
}

function expected(truth: Array<Record<string, unknown>>, expiry: Array<Record<string, unknown>>) {
  const counts = () => ({both: 0, keyOnly: 0, neither: 0, tokenOnly: 0})
  const credentials = {people: counts(), sysadmins: counts()}
  const buckets = {days30: 0, days90: 0, days365: 0, never: 0, older: 0}
  for (const row of truth) {
    const state = row.has_key ? (row.has_tokens ? 'both' : 'keyOnly') : row.has_tokens ? 'tokenOnly' : 'neither'
    credentials[row.sysadmin ? 'sysadmins' : 'people'][state] += row.users as number
    if (row.has_key) buckets[row.bucket as keyof typeof buckets] += row.users as number
  }
  const tokens = {days30: 0, days7: 0, expired: 0, later: 0, never: 0, total: 0}
  for (const row of expiry) {
    tokens[row.bucket as keyof typeof tokens] += row.tokens as number
    tokens.total += row.tokens as number
  }
  return {buckets, credentials, tokens}
}

describe('audit --html: the readiness figures', () => {
  for (const [version, activity] of [
    ['2.9', true],
    ['2.11', true],
    ['2.11', false],
  ] as Array<[CkanVersion, boolean]>) {
    it(`counts every credential state, sign of life and expiry as plain SQL does (CKAN ${version}, ${activity ? 'with' : 'without'} activity rows)`, async () => {
      const site = await mixedSite(version, {activity})
      const folder = await mkdtemp(join(tmpdir(), 'ckan-migrate-breakdown-'))
      const run = await runCliJson<AuditResult>([
        'audit',
        '--database-url',
        site.url,
        '--html',
        join(folder, 'readiness.html'),
      ])
      const breakdown = run.json.result!.breakdown as AuditBreakdown
      const want = expected(site.truth, site.expiry)
      expect(breakdown.credentials).toEqual(want.credentials)
      expect(breakdown.keyHolderActivity.buckets).toEqual(want.buckets)
      expect(breakdown.tokenExpiry).toEqual(want.tokens)
      // Every bucket and state is in use, so none of them is counted by accident.
      expect(Object.values(want.buckets).every((count) => count > 0)).toBe(true)
      expect(want.credentials.people.tokenOnly).toBeGreaterThan(0)
      expect(Object.values(want.tokens).every((count) => count > 0)).toBe(true)
      expect(breakdown.keyHolderActivity.basis.some((text) => text.startsWith('user.last_active'))).toBe(
        version !== '2.9',
      )
      // The plain audit counts the same users, without the figures.
      const plain = await runCliJson<AuditResult>(['audit', '--database-url', site.url])
      expect(plain.json.result!.breakdown).toBeNull()
      expect(plain.json.result!.summary).toEqual(run.json.result!.summary)
      expect(plain.json.result!.findings).toEqual(run.json.result!.findings)
    })
  }

  it('ends as soon as the audit does, even when the chart thread is still loading (a failed connection)', async () => {
    // The thread that draws the charts starts with the command; it must never hold the process open.
    const folder = await mkdtemp(join(tmpdir(), 'ckan-migrate-breakdown-'))
    const run = await runCliChild([
      'audit',
      '--database-url',
      'postgresql://nobody@127.0.0.1:1/ckan',
      '--html',
      join(folder, 'readiness.html'),
    ])
    expect(run.code, run.output).toBe(EXIT_CODES.databaseUnreachable)
    expect(run.output).not.toMatch(/\n\s+at /)
  })
})
