import {createServer, type Server, type Socket} from 'node:net'
import {join} from 'node:path'
import {describe, expect, it, onTestFinished} from 'vitest'

import {EXIT_CODES} from '../../src/lib/errors.js'
import {runCliChild} from '../helpers/run-cli-child.js'
import {issueTokensArgs, tempDir} from '../helpers/site-commands.js'
import {startTestSite} from '../helpers/test-site.js'

/** A "CKAN" that accepts connections and never answers; `connected` resolves on the first one. */
async function stalledServer(): Promise<{connected: Promise<void>; url: string}> {
  const sockets = new Set<Socket>()
  let connected!: () => void
  const first = new Promise<void>((resolve) => {
    connected = resolve
  })
  const server: Server = createServer((socket) => {
    sockets.add(socket)
    connected()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  onTestFinished(async () => {
    for (const socket of sockets) socket.destroy()
    await new Promise((resolve) => server.close(resolve))
  })
  return {connected: first, url: `http://127.0.0.1:${(server.address() as {port: number}).port}`}
}

/**
 * The process-level promise: whatever a command waits on (here a server that never answers, with
 * the default 30 s timeout and its retries), SIGTERM or a second Ctrl-C ends it promptly with the
 * interrupted exit code (130), not a signal death and not minutes later with another code. The
 * test timeouts are generous; what is asserted is that the process exited, and how.
 */
describe('signals while a command is blocked', () => {
  it('SIGTERM ends issue-tokens waiting on a server that never answers, with exit 130', async () => {
    const site = await startTestSite({users: 5, version: '2.9'})
    const stalled = await stalledServer()
    const out = join(await tempDir(), 'run')
    const run = await runCliChild(issueTokensArgs({...site, ckanUrl: stalled.url}, out), {
      interrupt: {signal: 'SIGTERM', when: stalled.connected},
    })
    expect(run.signalled, run.output).toBe(true)
    expect(run.signal, run.output).toBeNull()
    expect(run.code, run.output).toBe(EXIT_CODES.interrupted)
  }, 60_000)

  it('under --json, SIGTERM still leaves exactly one JSON document on stdout, status 130', async () => {
    const site = await startTestSite({users: 5, version: '2.9'})
    const stalled = await stalledServer()
    const out = join(await tempDir(), 'run')
    const run = await runCliChild([...issueTokensArgs({...site, ckanUrl: stalled.url}, out), '--json'], {
      interrupt: {signal: 'SIGTERM', when: stalled.connected},
    })
    expect(run.code, run.output).toBe(EXIT_CODES.interrupted)
    expect(JSON.parse(run.output)).toMatchObject({error: {code: 'interrupted'}, status: EXIT_CODES.interrupted})
  }, 60_000)

  it('a second Ctrl-C ends it at once, with exit 130', async () => {
    const site = await startTestSite({users: 5, version: '2.9'})
    const stalled = await stalledServer()
    const out = join(await tempDir(), 'run')
    const run = await runCliChild(issueTokensArgs({...site, ckanUrl: stalled.url}, out), {
      interrupt: {signal: 'SIGINT', when: stalled.connected},
      thenInterrupt: {output: /press Ctrl-C again to quit now/, signal: 'SIGINT'},
    })
    expect(run.output).toMatch(/press Ctrl-C again to quit now/)
    expect(run.signal, run.output).toBeNull()
    expect(run.code, run.output).toBe(EXIT_CODES.interrupted)
  }, 60_000)
})
