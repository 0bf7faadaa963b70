import pg from 'pg'
import {describe, expect, it} from 'vitest'

import {FaultPlan, parseFaultSettings} from '../../src/sandbox/faults.js'
import {startTestSite, type TestSite} from '../helpers/test-site.js'

async function tokenCount(site: TestSite): Promise<number> {
  const client = new pg.Client({connectionString: site.databaseUrl})
  await client.connect()
  try {
    return Number(
      (await client.query<{n: string}>(`SELECT count(*) AS n FROM api_token WHERE name = 'fault'`)).rows[0]!.n,
    )
  } finally {
    await client.end()
  }
}

function create(site: TestSite, signal?: AbortSignal): Promise<Response> {
  return fetch(`${site.ckanUrl}/api/3/action/api_token_create`, {
    body: JSON.stringify({name: 'fault', user: 'admin'}),
    headers: {Authorization: site.adminCredential.reveal(), 'Content-Type': 'application/json'},
    method: 'POST',
    signal,
  })
}

describe('fault settings', () => {
  it('parse from JSON or key=value, and refuse nonsense with a one-line error', () => {
    expect(parseFaultSettings('{"status503": 0.1, "latencyMs": 5}')).toEqual({latencyMs: 5, status503: 0.1})
    expect(parseFaultSettings('status429=0.2,retryAfterSeconds=3,actions=api_token_create+user_show,seed=7')).toEqual({
      actions: ['api_token_create', 'user_show'],
      retryAfterSeconds: 3,
      seed: '7',
      status429: 0.2,
    })
    expect(() => parseFaultSettings('status503=2')).toThrow(/at most 1/)
    expect(() => parseFaultSettings('status500=0.6,status503=0.6')).toThrow(/add up to more than 1/)
    expect(() => parseFaultSettings('explode=1')).toThrow(/unknown setting "explode"/)
    expect(() => parseFaultSettings('{nope')).toThrow(/not valid JSON/)
  })

  it('parse the capacity model: workers, backlog, per-action service time with jitter', () => {
    expect(parseFaultSettings('workers=4,backlog=8,serviceMs=10,serviceJitterMs=2,overflowStatus=503')).toEqual({
      backlog: 8,
      overflowStatus: 503,
      serviceJitterMs: 2,
      serviceMs: 10,
      workers: 4,
    })
    expect(parseFaultSettings('serviceMs=api_token_create:12+*:4')).toEqual({serviceMs: {'*': 4, api_token_create: 12}})
    const plan = new FaultPlan({serviceJitterMs: 2, serviceMs: {'*': 4, api_token_create: 12}})
    const creates = Array.from({length: 50}, () => plan.serviceTime('api_token_create'))
    expect(Math.min(...creates)).toBeGreaterThanOrEqual(12)
    expect(Math.max(...creates)).toBeLessThan(14)
    expect(new Set(creates).size).toBeGreaterThan(1)
    expect(plan.serviceTime('user_show')).toBeGreaterThanOrEqual(4)
    expect(plan.backlog).toBe(100)
    expect(() => parseFaultSettings('workers=0')).toThrow(/workers must be a whole number ≥ 1/)
    expect(() => parseFaultSettings('workers=1.5')).toThrow(/whole number/)
    expect(() => parseFaultSettings('overflowStatus=500')).toThrow(/502 or 503/)
    expect(() => parseFaultSettings('serviceMs=api_token_create:x')).toThrow(/serviceMs/)
  })

  it('are seeded: the same seed gives the same faults, another seed others', () => {
    const draw = (seed: string) => {
      const plan = new FaultPlan({jitterMs: 10, seed, status500: 0.3, status503: 0.3})
      return Array.from({length: 50}, () => plan.decide('api_token_create'))
    }
    expect(draw('a')).toEqual(draw('a'))
    expect(draw('a')).not.toEqual(draw('b'))
    const faults = draw('a').map((decision) => decision.fault)
    expect(faults).toContain('status-500')
    expect(faults).toContain(undefined)
    expect(new FaultPlan({status500: 1}).decide('status_show').fault).toBeUndefined()
  })
})

describe('emulator fault injection', () => {
  it('answers 500/502/503/429 before the action runs, only for the selected actions, settable at run time', async () => {
    const site = await startTestSite({faults: {status503: 1}, users: 20})
    const unavailable = await create(site)
    expect(unavailable.status).toBe(503)
    expect(unavailable.headers.get('content-type')).toMatch(/text\/html/)
    expect((await fetch(`${site.ckanUrl}/api/3/action/status_show`)).status).toBe(200)

    site.emulator.setFaults({retryAfterSeconds: 7, status429: 1})
    const limited = await create(site)
    expect(limited.status).toBe(429)
    expect(limited.headers.get('retry-after')).toBe('7')

    site.emulator.setFaults({status500: 1})
    const failed = await create(site)
    expect(failed.status).toBe(500)
    expect(await failed.json()).toMatchObject({
      error: {__type: 'Internal Server Error', message: 'Internal Server Error'},
      success: false,
    })

    site.emulator.setFaults({status502: 1})
    expect((await create(site)).status).toBe(502)
    expect(await tokenCount(site)).toBe(0)

    site.emulator.setFaults({actions: ['status_show'], status503: 1})
    expect((await fetch(`${site.ckanUrl}/api/3/action/status_show`)).status).toBe(503)
    expect((await create(site)).status).toBe(200)

    site.emulator.setFaults({jitterMs: 5, latencyMs: 5})
    expect((await create(site)).status).toBe(200)
    expect(await tokenCount(site)).toBe(2)
    expect(site.emulator.stats().faults).toMatchObject({
      'status-429': 1,
      'status-500': 1,
      'status-502': 1,
      'status-503': 2,
    })
  })

  it('resets the connection before the write (no token) or after it (token created, no answer)', async () => {
    const site = await startTestSite({faults: {resetBeforeWrite: 1}, users: 20})
    await expect(create(site)).rejects.toThrow()
    expect(await tokenCount(site)).toBe(0)
    site.emulator.setFaults({resetAfterWrite: 1})
    await expect(create(site)).rejects.toThrow()
    expect(await tokenCount(site)).toBe(1)
  })

  it('serves at most `workers` requests at once, queues `backlog` more, and refuses the rest with a proxy 502', async () => {
    const site = await startTestSite({faults: {backlog: 1, serviceMs: 600, workers: 1}, users: 20})
    const answers = await Promise.all([create(site), create(site), create(site)])
    const statuses = answers.map((answer) => answer.status).sort()
    expect(statuses).toEqual([200, 200, 502])
    const refused = answers.find((answer) => answer.status === 502)!
    expect(await refused.text()).toContain('502 Bad Gateway')
    expect(await tokenCount(site)).toBe(2)
    expect(site.emulator.stats().capacity).toEqual({maxBacklog: 1, maxInService: 1, refused: 1})
  })

  it('commits then hangs: the token exists but no answer ever comes', async () => {
    const site = await startTestSite({faults: {hangAfterCommit: 1}, users: 20})
    await expect(create(site, AbortSignal.timeout(1500))).rejects.toThrow(/abort|timeout/i)
    expect(await tokenCount(site)).toBe(1)
    expect(site.emulator.stats().faults['hang-after-commit']).toBe(1)
  })
})
