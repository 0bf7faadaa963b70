import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import pg from 'pg'
import {onTestFinished} from 'vitest'

import type {TestSite} from './test-site.js'

/** A temporary folder removed when the test finishes. */
export async function tempDir(prefix = 'ckan-migrate-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  onTestFinished(() => rm(dir, {force: true, recursive: true}))
  return dir
}

/** One query against a test site's database, on a connection of its own. */
export async function querySite<T extends pg.QueryResultRow>(
  site: Pick<TestSite, 'databaseUrl'>,
  text: string,
  values: unknown[] = [],
): Promise<T[]> {
  const client = new pg.Client({connectionString: site.databaseUrl})
  await client.connect()
  try {
    return (await client.query<T>(text, values)).rows
  } finally {
    await client.end()
  }
}

/** `issue-tokens` against a test site, the way the runbook runs it, plus any extra flags. */
export function issueTokensArgs(
  site: Pick<TestSite, 'apiKeyFile' | 'ckanIni' | 'ckanUrl'>,
  out: string,
  ...extra: string[]
): string[] {
  return siteCommandArgs('issue-tokens', site, out, ...extra)
}

/** `rewrite-config` of the site's ckan.ini into the run folder `out`, plus `extra`. */
export function rewriteConfigArgs(
  site: Pick<TestSite, 'apiKeyFile' | 'ckanIni' | 'ckanUrl'>,
  out: string,
  ...extra: string[]
): string[] {
  return siteCommandArgs('rewrite-config', site, out, ...extra)
}

function siteCommandArgs(
  command: string,
  site: Pick<TestSite, 'apiKeyFile' | 'ckanIni' | 'ckanUrl'>,
  out: string,
  ...extra: string[]
): string[] {
  return [
    command,
    '--ckan-url',
    site.ckanUrl,
    '--api-key-file',
    site.apiKeyFile,
    '--ckan-ini',
    site.ckanIni,
    '--out',
    out,
    ...extra,
  ]
}
