import {readFile} from 'node:fs/promises'
import {join} from 'node:path'
import {describe, expect, it, onTestFinished} from 'vitest'

import {ContinuityProbe} from '../../src/sandbox/continuity-probe.js'
import {mulberry32} from '../../src/sandbox/faults.js'
import {Secret} from '../../src/lib/secret.js'
import {migratedSite, runTokensInCkan, serviceTokens, type StoredLine} from '../helpers/rotation.js'
import {runCli} from '../helpers/run-cli.js'
import {type ChildRun, runCliChild} from '../helpers/run-cli-child.js'
import {readJsonLines} from '../helpers/run-state.js'
import {tempDir} from '../helpers/site-commands.js'
import {startTestSite, type TestSite} from '../helpers/test-site.js'
import {REAL_POSTGRES_URL} from '../helpers/test-database.js'

/**
 * kill -9 at random (seeded) moments of `rotate` and of `rotate --finish`, each followed by a
 * rerun with the same --out, under latency and the faults that leave a create's outcome unknown.
 * Meanwhile a continuity probe calls CKAN with each service's token as its config holds it right
 * now (re-read all the time, as a restarted service would): it must never fail. After every kill,
 * in SQL: every person of the run still has a live token of the run that is in the store. At the
 * end: exactly one successor per person (rotate), then exactly one live token of the run per
 * person, the successor, which works (finish).
 */
describe('rotate after kill -9', () => {
  it('never leaves a person or a service without a working token, and never makes a second successor', async () => {
    const site = await startTestSite({apiTokenLines: false, users: REAL_POSTGRES_URL ? 300 : 80, version: '2.9'})
    const out = join(await tempDir('ckan-migrate-rotate-crash-'), 'run')
    const before = await migratedSite(site, out, {limit: REAL_POSTGRES_URL ? 60 : 24, version: '2.9'})
    const people = before.filter((token) => token.source === 'issue-tokens')
    site.emulator.setFaults({
      actions: ['api_token_create', 'api_token_revoke'],
      hangAfterCommit: 0.02,
      jitterMs: 10,
      latencyMs: 15,
      resetAfterWrite: 0.03,
      seed: 'rotate-kill-9',
    })

    const probe = startServiceProbe(site)
    const random = mulberry32(20_261_203)
    const journal = join(out, 'journal.jsonl')
    const admin = ['--api-key-file', site.apiKeyFile, '--concurrency', '4', '--timeout', '1']
    const outputs: string[] = []

    const killAndRerun = async (
      args: string[],
      kills: number,
      spread: {bytes: number; delayMs: number},
    ): Promise<number> => {
      let killed = 0
      for (let attempt = 0; attempt < kills * 3 && killed < kills; attempt += 1) {
        const run = await runCliChild(args, {
          interrupt: {
            // Anywhere from the first journal entries to well into the run.
            afterBytes: Math.floor(random() * spread.bytes),
            delayMs: Math.floor(random() * spread.delayMs),
            journal,
            signal: 'SIGKILL',
          },
        })
        outputs.push(run.output)
        if (run.signalled && run.signal === 'SIGKILL') killed += 1
        await expectEveryPersonHasAStoredLiveToken(site, out, people)
        if (run.code === 0) break
      }
      let final: ChildRun | undefined
      for (let attempt = 0; attempt < 4; attempt += 1) {
        final = await runCliChild(args)
        outputs.push(final.output)
        if (final.code === 0) break
        expect(final.code, final.output).toBe(11)
      }
      expect(final?.code, final?.output).toBe(0)
      return killed
    }

    const rotateKills = await killAndRerun(['rotate', '--out', out, ...admin, '--all'], 3, {bytes: 4000, delayMs: 800})
    expect(rotateKills).toBeGreaterThanOrEqual(2)
    const stored = await readJsonLines<StoredLine>(join(out, 'tokens.jsonl'))
    const inCkan = await runTokensInCkan(site, out)
    const storedJtis = new Set(stored.map((token) => token.jti))
    for (const person of people) {
      // The predecessor and exactly one successor, both in the store: no second successor, no orphan.
      const successors = stored.filter((token) => token.predecessorJti === person.jti)
      expect(successors).toHaveLength(1)
      expect(new Set(inCkan.get(person.userId))).toEqual(new Set([person.jti, successors[0]!.jti]))
    }
    for (const jtis of inCkan.values()) for (const jti of jtis) expect(storedJtis.has(jti)).toBe(true)
    const config = await serviceTokens(site)
    for (const service of ['xloader', 'datapusher'])
      expect(stored.find((token) => token.service === service && token.predecessorJti)?.token).toBe(config[service])

    // The people switch to their successors (real calls); the probe keeps the services' moving.
    const successorOf = new Map(
      stored.filter((token) => token.predecessorJti).map((token) => [token.predecessorJti!, token]),
    )
    for (const person of people.slice(0, people.length / 2)) {
      const successor = successorOf.get(person.jti)!
      const client = new ContinuityProbe({ckanUrl: site.ckanUrl})
      client.setClients([
        {credential: new Secret(successor.token), kind: 'user', label: person.userName, userName: person.userName},
      ])
      await client.round()
      expect(client.stats().failures).toBe(0)
    }
    await probe.round()

    const finishKills = await killAndRerun(['rotate', '--out', out, ...admin, '--finish', '--grace', '0d'], 3, {
      bytes: 1500,
      delayMs: 100,
    })
    expect(finishKills).toBeGreaterThanOrEqual(2)
    site.emulator.setFaults({})
    await probe.stop()
    expect(probe.stats().failures, JSON.stringify(probe.stats().failureSamples)).toBe(0)
    expect(probe.stats().calls).toBeGreaterThan(0)

    // Exactly one live token of the run per person, the successor, and it works (verify, each alone).
    const after = await runTokensInCkan(site, out)
    for (const person of people) expect(after.get(person.userId)).toEqual([successorOf.get(person.jti)!.jti])
    const verified = await runCli(['verify', '--out', out, '--concurrency', '8'])
    expect(verified.exitCode, verified.stdout).toBe(0)

    const written = [...outputs, verified.stdout, await readFile(journal, 'utf8')].join('\n')
    for (const token of stored) {
      expect(written.includes(token.token)).toBe(false)
      expect(written.includes(token.jti)).toBe(false)
    }
  }, 420_000)
})

/** The services as a restarted service sees them: whatever token its config holds at this moment. */
function startServiceProbe(site: TestSite): ContinuityProbe & {stop(): Promise<void>} {
  const probe = new ContinuityProbe({ckanUrl: site.ckanUrl})
  const refresh = async () => {
    const tokens = await serviceTokens(site)
    probe.setClients(
      Object.entries(tokens).map(([service, token]) => ({
        credential: new Secret(token),
        kind: 'service' as const,
        label: service,
        userName: site.siteUserName,
      })),
    )
  }
  let running = true
  const loop = (async () => {
    while (running) {
      await refresh()
      await probe.round()
      await new Promise((resolve) => setTimeout(resolve, 25))
    }
  })()
  const stop = probe.stop.bind(probe)
  onTestFinished(async () => {
    running = false
    await loop
  })
  return Object.assign(probe, {
    async stop() {
      running = false
      await loop
      await stop()
    },
  })
}

/** In SQL: each person still has a token of the run in CKAN that is also in our store (so it was handed over). */
async function expectEveryPersonHasAStoredLiveToken(site: TestSite, out: string, people: StoredLine[]): Promise<void> {
  const stored = new Set((await readJsonLines<StoredLine>(join(out, 'tokens.jsonl'))).map((token) => token.jti))
  const inCkan = await runTokensInCkan(site, out)
  for (const person of people) {
    const live = (inCkan.get(person.userId) ?? []).filter((jti) => stored.has(jti))
    expect(live.length, `${person.userName} has no stored live token`).toBeGreaterThanOrEqual(1)
  }
}
