import {spawnSync} from 'node:child_process'
import {existsSync} from 'node:fs'
import {mkdtemp} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {describe, expect, it, type TestContext} from 'vitest'

const LAUNCHER = fileURLToPath(new URL('../../bin/with-node.cjs', import.meta.url))

/** A node on this machine older than the project needs (CI's machine has Node 20 as /usr/bin/node). */
function oldNode(context: TestContext): string {
  for (const candidate of ['/usr/bin/node', '/usr/local/bin/node', '/bin/node']) {
    if (!existsSync(candidate)) continue
    const version = spawnSync(candidate, ['--version'], {encoding: 'utf8'}).stdout.trim()
    const [major = 0, minor = 0] = version.replace(/^v/, '').split('.').map(Number)
    if (major < 22 || (major === 22 && minor < 12)) return candidate
  }
  return context.skip('needs a Node.js older than 22.12 on this machine (as /usr/bin/node), as CI has')
}

/** The environment of a fresh shell on that machine: its own PATH, none of npm's variables. */
function machineEnvironment(extra: Record<string, string>): NodeJS.ProcessEnv {
  return {HOME: process.env.HOME ?? tmpdir(), PATH: '/usr/bin:/bin', ...extra}
}

describe('bin/with-node.cjs (what npm test and npm run sandbox start with)', () => {
  it('on a too-old Node with no registry reachable: one line saying what is missing and what to do, exit 12, nothing run', async (context) => {
    const node = oldNode(context)
    const scratch = await mkdtemp(join(tmpdir(), 'with-node-'))
    const child = spawnSync(node, [LAUNCHER, 'node', '-e', 'console.log("the command ran")'], {
      encoding: 'utf8',
      env: machineEnvironment({
        CKAN_MIGRATE_NODE_CACHE: join(scratch, 'node-cache'),
        npm_config_cache: join(scratch, 'npm-cache'),
        npm_config_fetch_retries: '0',
        npm_config_registry: 'http://127.0.0.1:9/',
      }),
      timeout: 60_000,
    })
    expect(child.status).toBe(12)
    expect(child.stdout).toBe('')
    const lines = child.stderr.trim().split('\n')
    // The announcement of the attempt, then the one-line verdict.
    expect(lines.at(-1)).toMatch(
      /^ckan-migrate: needs Node\.js 22\.12 or newer \(this is v\d+\.\d+\.\d+\) and could not fetch one from the npm registry \(.+\): install Node\.js 22\.12\+ \(or make the npm registry reachable\), then run this again$/,
    )
    expect(lines.length).toBeLessThanOrEqual(2)
  })

  it('on a too-old Node with the registry (or its cache) at hand: runs the command under Node 24, saying so in one line', async (context) => {
    const node = oldNode(context)
    const child = spawnSync(node, [LAUNCHER, 'node', '-p', 'process.versions.node'], {
      encoding: 'utf8',
      env: machineEnvironment({}),
      timeout: 300_000,
    })
    expect(child.status, child.stderr).toBe(0)
    expect(child.stdout.trim()).toMatch(/^24\./)
    expect(child.stderr.trim().split('\n')).toHaveLength(1)
    expect(child.stderr).toMatch(/^ckan-migrate: (using Node v24\.|Node v\d+.* is older than 22\.12; fetching Node 24)/)
  })

  it('passes the exit code of the command through', () => {
    const child = spawnSync(process.execPath, [LAUNCHER, process.execPath, '-e', 'process.exit(7)'], {encoding: 'utf8'})
    expect(child.status).toBe(7)
  })
})
