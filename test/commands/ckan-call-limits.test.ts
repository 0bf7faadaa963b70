import {readFile} from 'node:fs/promises'
import {createServer, type Socket} from 'node:net'
import {join} from 'node:path'
import {describe, expect, it, onTestFinished} from 'vitest'

import {EXIT_CODES} from '../../src/lib/errors.js'
import {runCliChild} from '../helpers/run-cli-child.js'
import {runCli} from '../helpers/run-cli.js'
import {issueTokensArgs, querySite, tempDir} from '../helpers/site-commands.js'
import {startTestSite} from '../helpers/test-site.js'

/**
 * A TCP server that accepts every connection, reads the request and never answers. `held`
 * resolves once a request has arrived; `requests` counts them.
 */
async function silentServer(): Promise<{held: Promise<void>; requests: () => number; url: string}> {
  const sockets = new Set<Socket>()
  let requests = 0
  let arrived!: () => void
  const held = new Promise<void>((resolve) => {
    arrived = resolve
  })
  const server = createServer((socket) => {
    sockets.add(socket)
    socket.on('data', (chunk: Buffer) => {
      if (chunk.toString('latin1').includes('HTTP/1.1')) requests += 1
      arrived()
    })
    socket.on('error', () => {})
    socket.on('close', () => sockets.delete(socket))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  onTestFinished(async () => {
    for (const socket of sockets) socket.destroy()
    await new Promise((resolve) => server.close(resolve))
  })
  const {port} = server.address() as {port: number}
  return {held, requests: () => requests, url: `http://127.0.0.1:${port}`}
}

describe('one CKAN API call: --timeout and interrupts', () => {
  it('--timeout bounds the whole call: a server that never answers gets at most two attempts within it', async () => {
    const site = await startTestSite({users: 5, version: '2.10'})
    const silent = await silentServer()
    const run = await runCli(['audit', '--database-url', site.databaseUrl, '--ckan-url', silent.url, '--timeout', '1'])
    expect(run.exitCode).toBe(EXIT_CODES.ckanUnreachable)
    expect(run.error?.message).toMatch(
      /Cannot reach CKAN for status_show: no answer within 1 s \(--timeout, [12] attempts?\)/,
    )
    // Before: --timeout was per attempt, and the call was sent 1 + 4 times (5 s for "--timeout 1").
    expect(silent.requests()).toBeGreaterThanOrEqual(1)
    expect(silent.requests()).toBeLessThanOrEqual(2)
  }, 60_000)

  it('SIGTERM ends a call to a server that accepts and never answers: exit 130, not minutes of retries', async () => {
    const site = await startTestSite({users: 5, version: '2.10'})
    const silent = await silentServer()
    const run = await runCliChild(
      ['audit', '--database-url', site.databaseUrl, '--ckan-url', silent.url, '--timeout', '600'],
      {interrupt: {signal: 'SIGTERM', when: silent.held}},
    )
    expect(run.signalled).toBe(true)
    expect(run.code).toBe(EXIT_CODES.interrupted)
    expect(run.output).toMatch(/Cannot reach CKAN for status_show: interrupted before CKAN answered/)
    expect(silent.requests()).toBe(1)
  }, 60_000)

  it('SIGTERM while CKAN holds creates unanswered: exit 130, and the rerun still ends with one token per user', async () => {
    const site = await startTestSite({users: 12, version: '2.10'})
    const out = join(await tempDir('ckan-migrate-sigterm-'), 'run')
    // Every create is carried out by CKAN, and its answer never comes.
    site.emulator.setFaults({actions: ['api_token_create'], hangAfterCommit: 1})
    const args = issueTokensArgs(site, out, '--limit', '3', '--concurrency', '2', '--timeout', '600')
    const interrupted = await runCliChild(args, {
      interrupt: {afterBytes: 0, delayMs: 300, journal: join(out, 'journal.jsonl'), signal: 'SIGTERM'},
    })
    expect(interrupted.signalled).toBe(true)
    expect(interrupted.code, interrupted.output).toBe(EXIT_CODES.interrupted)

    site.emulator.setFaults({})
    const resumed = await runCli(args)
    expect(resumed.exitCode, resumed.stdout + resumed.stderr).toBe(0)
    const {runId} = JSON.parse(await readFile(join(out, 'run.json'), 'utf8')) as {runId: string}
    const held = await querySite<{count: string; user_id: string}>(
      site,
      `SELECT user_id, count(*) AS count FROM api_token WHERE name LIKE '%' || $1 || '%' GROUP BY user_id`,
      [runId],
    )
    expect(held).toHaveLength(3)
    expect(held.every((row) => Number(row.count) === 1)).toBe(true)
  }, 120_000)
})
