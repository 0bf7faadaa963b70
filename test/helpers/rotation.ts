import {readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import pg from 'pg'
import {expect} from 'vitest'

import {readCkanIni} from '../../src/lib/site/ckan-ini.js'
import {upgradeSandboxDatabase} from '../../src/sandbox/sandbox-site.js'
import {SANDBOX_SERVER_CERT} from '../../src/sandbox/rehearse-migration.js'
import {runCli} from './run-cli.js'
import {readJsonLines} from './run-state.js'
import {issueTokensArgs, querySite, rewriteConfigArgs} from './site-commands.js'
import type {TestSite} from './test-site.js'

export type StoredLine = {
  createdAt: string
  expiresAt?: null | string
  jti: string
  predecessorJti?: string
  service?: string
  source: string
  token: string
  userId: string
  userName: string
}

/** One authenticated call with a credential alone (api_token_list for its own user): the HTTP status. */
export async function callWith(site: Pick<TestSite, 'ckanUrl'>, credential: string, userName: string): Promise<number> {
  const response = await fetch(`${site.ckanUrl}/api/3/action/api_token_list`, {
    body: JSON.stringify({user: userName, user_id: userName}),
    headers: {Authorization: credential, 'Content-Type': 'application/json'},
    method: 'POST',
  })
  await response.arrayBuffer()
  return response.status
}

export const SERVICE_KEYS = {datapusher: 'ckan.datapusher.api_token', xloader: 'ckanext.xloader.api_token'} as const

/** The service tokens ckan.ini holds now (read fresh, as a restarted service reads them). */
export async function serviceTokens(site: Pick<TestSite, 'ckanIni'>): Promise<Record<string, string>> {
  const ini = await readCkanIni(site.ckanIni)
  return Object.fromEntries(Object.entries(SERVICE_KEYS).map(([service, key]) => [service, ini.get(key) ?? '']))
}

/**
 * The runbook up to the bundles on a 2.9 site: rewrite-config (service tokens of the run),
 * issue-tokens for `limit` users, bundle; then the upgrade to `version` when it is not 2.9.
 */
export async function migratedSite(
  site: TestSite,
  out: string,
  options: {expiring?: boolean; issueExtra?: string[]; limit: number; version: '2.9' | '2.10' | '2.11'},
): Promise<StoredLine[]> {
  const rewrite = await runCli(rewriteConfigArgs(site, out))
  expect(rewrite.exitCode, rewrite.stdout + rewrite.stderr).toBe(0)
  await site.emulator.loadConfig()
  const issued = await runCli(
    issueTokensArgs(site, out, '--limit', String(options.limit), ...(options.issueExtra ?? [])),
  )
  expect(issued.exitCode, issued.stdout + issued.stderr).toBe(0)
  const bundled = await runCli(['bundle', '--out', out, '--server-cert', SANDBOX_SERVER_CERT])
  expect(bundled.exitCode, bundled.stdout + bundled.stderr).toBe(0)
  if (options.version !== '2.9') {
    // The admin's legacy key stops working at the upgrade: from here on it uses a token, as the runbook says.
    const response = await fetch(`${site.ckanUrl}/api/3/action/api_token_create`, {
      body: JSON.stringify({
        name: 'admin for the tests',
        user: site.adminName,
        // expire_api_token makes a lifetime required (ckan-facts §4.4).
        ...(options.expiring ? {expires_in: 30, unit: 86_400} : {}),
      }),
      headers: {Authorization: site.adminCredential.reveal(), 'Content-Type': 'application/json'},
      method: 'POST',
    })
    const created = (await response.json()) as {result: {token: string}}
    await writeFile(site.apiKeyFile, `${created.result.token}\n`, {mode: 0o600})
    // 2.10 refuses two active users with one e-mail (an admin decision; here: made unique).
    await querySite(
      site,
      `UPDATE "user" u SET email = split_part(u.email, '@', 1) || '+' || u.id || '@' || split_part(u.email, '@', 2)
       FROM (SELECT id, row_number() OVER (PARTITION BY email ORDER BY created, id) AS n
             FROM "user" WHERE state = 'active' AND email IS NOT NULL) d
       WHERE u.id = d.id AND d.n > 1`,
    )
    const sql = new pg.Client({connectionString: site.databaseUrl})
    await sql.connect()
    try {
      await upgradeSandboxDatabase(sql, options.version)
    } finally {
      await sql.end()
    }
    await site.emulator.setVersion(options.version)
  }
  return readJsonLines<StoredLine>(join(out, 'tokens.jsonl'))
}

/** The tokens of the run CKAN holds (their name carries the run id), by user id. */
export async function runTokensInCkan(site: TestSite, out: string): Promise<Map<string, string[]>> {
  const runId = JSON.parse(await readFile(join(out, 'run.json'), 'utf8')).runId as string
  const rows = await querySite<{id: string; user_id: string}>(
    site,
    `SELECT id, user_id FROM api_token WHERE name LIKE '%' || $1 || '%' ORDER BY created_at, id`,
    [runId],
  )
  const byUser = new Map<string, string[]>()
  for (const row of rows) byUser.set(row.user_id, [...(byUser.get(row.user_id) ?? []), row.id])
  return byUser
}
