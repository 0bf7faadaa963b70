import {readFile} from 'node:fs/promises'
import {join} from 'node:path'
import pg from 'pg'
import {expect, onTestFinished} from 'vitest'

import type {TestSite} from './test-site.js'

export type StoredTokenLine = {jti: string; token: string; userId: string}

/** Complete JSON lines of a JSONL file (a torn last line, left by a kill, is skipped). */
export async function readJsonLines<T>(path: string): Promise<T[]> {
  return (await readFile(path, 'utf8'))
    .split('\n')
    .filter((line) => line.startsWith('{') && line.endsWith('}'))
    .map((line) => JSON.parse(line) as T)
}

/**
 * The exactly-once check after an issue-tokens run, from the outside: the users issue-tokens
 * selects by default (active, holding a key, not the site user), the database's tokens of this
 * run (their name carries the run id), and our token store. Asserts exactly one token of the run
 * per selected user, each in the store, nothing else stored; returns the store for secret scans.
 */
export async function expectOneStoredTokenPerSelectedUser(site: TestSite, out: string): Promise<StoredTokenLine[]> {
  const client = new pg.Client({connectionString: site.databaseUrl})
  await client.connect()
  onTestFinished(() => client.end())
  const runId = JSON.parse(await readFile(join(out, 'run.json'), 'utf8')).runId as string
  const selected = (
    await client.query<{id: string}>(
      `SELECT id FROM "user" WHERE state = 'active' AND apikey IS NOT NULL AND apikey <> '' AND name <> $1`,
      [site.siteUserName],
    )
  ).rows
  const tokens = (
    await client.query<{id: string; user_id: string}>(
      `SELECT id, user_id FROM api_token WHERE name LIKE '%' || $1 || '%'`,
      [runId],
    )
  ).rows
  const stored = await readJsonLines<StoredTokenLine>(join(out, 'tokens.jsonl'))
  expect(tokens.map((token) => token.user_id).sort()).toEqual(selected.map((user) => user.id).sort())
  expect(new Set(tokens.map((token) => token.id))).toEqual(new Set(stored.map((token) => token.jti)))
  expect(stored).toHaveLength(selected.length)
  return stored
}
