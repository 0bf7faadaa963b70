import type {TestContext} from 'vitest'

import {REAL_POSTGRES_URL} from './test-database.js'

/**
 * Tests that need something the machine may not have skip with a note saying what and how to get
 * it; the summary line (test/reporters/summary-line.ts) prints the notes, so a skipped test is never
 * a silent one.
 */
export const SKIP_NOTES = {
  realPostgres:
    'needs a real PostgreSQL server: set CKAN_MIGRATE_TEST_POSTGRES_URL=postgresql://user@host:port/postgres (bash .ci/run starts a throwaway one and sets it)',
  referenceSchemas: 'needs ../shared/ckan-reference/ (the reference pg_dumps) beside the checkout',
  root: 'cannot run as root (root reads any file): run the tests as an ordinary user',
}

export function skipWithoutRealPostgres(context: TestContext): void {
  if (!REAL_POSTGRES_URL) context.skip(SKIP_NOTES.realPostgres)
}

export function skipAsRoot(context: TestContext): void {
  if (process.getuid?.() === 0) context.skip(SKIP_NOTES.root)
}
