import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {onTestFinished} from 'vitest'

import {type SandboxSite, type SandboxSiteOptions, startSandboxSite} from '../../src/sandbox/sandbox-site.js'
import {REAL_POSTGRES_URL} from './test-database.js'

export type TestSiteOptions = Omit<SandboxSiteOptions, 'dir' | 'serverUrl'> & {
  /**
   * false: do not stop the site when the test finishes (for beforeAll); call `site.stop()` in
   * afterAll yourself. Default true.
   */
  autoStop?: boolean
}

export type TestSite = SandboxSite

/**
 * A small seeded CKAN site with the emulator running, for one test: on the real PostgreSQL of
 * CKAN_MIGRATE_TEST_POSTGRES_URL when set (a fresh database), else PGlite; ckan.ini and the
 * admin's 0600 credential file in a temporary folder. Stops itself (and removes the folder) when
 * the test finishes, unless `autoStop: false`.
 *
 *   const site = await startTestSite({version: '2.10', users: 30})
 *   await runCli(['issue-tokens', '--ckan-url', site.ckanUrl, '--api-key-file', site.apiKeyFile, ...])
 */
export async function startTestSite(options: TestSiteOptions = {}): Promise<TestSite> {
  const {autoStop = true, ...rest} = options
  const parent = await mkdtemp(join(tmpdir(), 'ckan-migrate-site-'))
  let site: SandboxSite
  try {
    site = await startSandboxSite({users: 50, ...rest, dir: join(parent, 'site'), serverUrl: REAL_POSTGRES_URL})
  } catch (error) {
    await rm(parent, {force: true, recursive: true})
    throw error
  }
  const stop = site.stop
  let stopped: Promise<void> | undefined
  const stopAndClean = () => {
    stopped ??= stop().finally(() => rm(parent, {force: true, recursive: true}))
    return stopped
  }
  const wrapped: TestSite = {...site, stop: stopAndClean}
  if (autoStop) onTestFinished(() => stopAndClean())
  return wrapped
}
