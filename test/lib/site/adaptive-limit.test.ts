import {describe, expect, it} from 'vitest'

import {
  AdaptiveLimiter,
  LatencyHistogram,
  LimitController,
  type LimitDecision,
  type LimitSample,
  runUnderLimit,
  takeFrom,
} from '../../../src/lib/site/adaptive-limit.js'

/**
 * The limiter's decisions on scripted latencies and statuses: no clock, no timer, no network.
 * A "site" here is a function from the limit in force to the answer of one call.
 */
type Site = (limit: number, index: number) => Partial<LimitSample>

/** A site of `workers` sync workers, 10 ms per call: answers take 10 ms × max(1, limit / workers). */
const workersSite =
  (workers: number): Site =>
  (limit) => ({latencyMs: 10 * Math.max(1, limit / workers)})

/** Feeds `calls` samples, each with the limit filled (the tasks admitted), and returns the decisions. */
function drive(controller: LimitController, site: Site, calls: number, start = {at: 0}): LimitDecision[] {
  const decisions: LimitDecision[] = []
  for (let index = 0; index < calls; index += 1) {
    const limit = controller.limit
    controller.started(limit)
    const answer = site(limit, index)
    start.at += (answer.latencyMs ?? 10) / limit
    const decision = controller.record({
      action: 'api_token_create',
      at: start.at,
      latencyMs: 10,
      status: 200,
      ...answer,
    })
    if (decision) decisions.push(decision)
  }
  return decisions
}

/** Feeds samples until one closes a window; returns that decision (the next window starts fresh). */
function untilDecision(controller: LimitController, site: Site, clock = {at: 0}): LimitDecision {
  for (let index = 0; ; index += 1) {
    const [decision] = drive(controller, (limit) => site(limit, index), 1, clock)
    if (decision) return decision
  }
}

const auto = (max = 32, latencyBudget = 2) => new LimitController({latencyBudget, max, mode: 'auto'})

describe('LimitController (--concurrency auto)', () => {
  it('starts at 1, measures the idle answer time, then grows while answers stay near it', () => {
    const controller = auto()
    expect(controller.limit).toBe(1)
    // Before 8 answers give the idle time, nothing is decided.
    expect(drive(controller, () => ({latencyMs: 12}), 7)).toEqual([])
    expect(controller.baseline('api_token_create')).toBeUndefined()
    const decisions = drive(controller, () => ({latencyMs: 12}), 1000)
    expect(controller.baseline('api_token_create')).toBe(12)
    // Slow start: doubling until the answers first show queueing.
    expect(decisions.slice(0, 4)).toMatchObject([
      {limit: 2, ratio: 1, reason: 'room'},
      {limit: 4, reason: 'room'},
      {limit: 8, reason: 'room'},
      {limit: 16, reason: 'room'},
    ])
    // A site that never slows down: up to --max-concurrency, and no further.
    drive(controller, () => ({latencyMs: 12}), 2000)
    expect(controller.limit).toBe(32)
    expect(controller.highest).toBe(32)
  })

  it('in slow start, judges a new limit only by calls made under it (not answers to the lower one)', () => {
    const controller = auto()
    let at = 0
    const sample = (latencyMs: number, limit: number) => {
      controller.started(controller.limit)
      at += latencyMs / controller.limit
      return controller.record({action: 'api_token_create', at, latencyMs, limit, status: 200})
    }
    const decisions: LimitDecision[] = []
    while (controller.limit === 1) {
      const decision = sample(10, 1)
      if (decision) decisions.push(decision)
    }
    expect(decisions.at(-1)).toMatchObject({limit: 2, reason: 'room'})
    // Answers to calls sent under limit 1 arrive for a while: fast, and no decision at all.
    for (let index = 0; index < 40; index += 1) expect(sample(10, 1)).toBeUndefined()
    // Calls made under 2 queue (a one-worker site): slow start ends there, no doubling to 4.
    let decision: LimitDecision | undefined
    while (!decision) decision = sample(20, 2)
    expect(decision.reason).not.toBe('room')
    expect(controller.limit).toBeLessThanOrEqual(2)
  })

  it('does not grow while the work leaves the limit unused', () => {
    const controller = auto()
    drive(controller, () => ({latencyMs: 10}), 200)
    untilDecision(controller, () => ({latencyMs: 10}))
    const before = controller.limit
    // Samples with nothing else in flight (the tasks are slower than the site, e.g. a slow disk).
    const decisions: LimitDecision[] = []
    for (let index = 0; index < 64; index += 1) {
      controller.started(1)
      const decision = controller.record({
        action: 'api_token_create',
        at: 10_000 + index * 10,
        latencyMs: 10,
        status: 200,
      })
      if (decision) decisions.push(decision)
    }
    expect(decisions.length).toBeGreaterThan(0)
    expect(decisions.every((decision) => decision.reason === 'idle')).toBe(true)
    expect(controller.limit).toBe(before)
  })

  it.each([
    [4, 4, 7],
    [8, 8, 15],
    [16, 16, 31],
  ])(
    'on a site of %i workers settles where it is busy and others stay within the budget (%i to %i)',
    (workers, low, high) => {
      const controller = auto()
      drive(controller, workersSite(workers), 3000)
      const limits = new Set<number>()
      for (const decision of drive(controller, workersSite(workers), 3000)) limits.add(decision.limit)
      expect(Math.min(...limits)).toBeGreaterThanOrEqual(low)
      expect(Math.max(...limits)).toBeLessThanOrEqual(high)
    },
  )

  it('is not held down by stalls of a shared machine (every other answer three times slower)', () => {
    const controller = auto()
    const stalling: Site = (limit, index) => ({latencyMs: (index % 2 === 0 ? 30 : 10) * Math.max(1, limit / 8)})
    drive(controller, stalling, 3000)
    const limits = drive(controller, stalling, 3000).map((decision) => decision.limit)
    expect(Math.min(...limits)).toBeGreaterThanOrEqual(8)
    expect(Math.max(...limits)).toBeLessThanOrEqual(15)
  })

  it('on one worker stays at 1, probing 2 ever more rarely (a failed probe doubles the wait)', () => {
    const controller = auto()
    const decisions = drive(controller, workersSite(1), 6000)
    const atTwo = (part: LimitDecision[]) => part.filter((decision) => decision.limit === 2).length
    const firstHalf = decisions.slice(0, decisions.length / 2)
    const secondHalf = decisions.slice(decisions.length / 2)
    expect(decisions.filter((decision) => decision.limit > 2)).toEqual([])
    expect(atTwo(secondHalf)).toBeLessThan(atTwo(firstHalf))
    expect(atTwo(secondHalf) / secondHalf.length).toBeLessThan(0.08)
    expect(decisions.some((decision) => decision.reason === 'budget')).toBe(true)
  })

  it('a lower --latency-budget keeps the limit lower on the same site', () => {
    const loose = auto(32, 3)
    const tight = auto(32, 1.25)
    drive(loose, workersSite(8), 4000)
    drive(tight, workersSite(8), 4000)
    expect(tight.limit).toBeLessThan(loose.limit)
    // Another call waits behind ours: (limit + 1) / 8 workers ≤ 1.25.
    expect(tight.limit).toBeLessThanOrEqual(9)
  })

  it('halves on a window of 502/503 answers, trims on one, and counts timeouts as overload', () => {
    const controller = auto()
    drive(controller, () => ({latencyMs: 10}), 2000)
    expect(controller.limit).toBe(32)
    untilDecision(controller, () => ({latencyMs: 10}))
    expect(untilDecision(controller, () => ({latencyMs: 1, status: 502}))).toMatchObject({
      limit: 16,
      reason: 'overload',
    })
    // One 503 among 16 answers: 1/16 off.
    expect(untilDecision(controller, (_, index) => (index === 0 ? {status: 503} : {latencyMs: 10}))).toMatchObject({
      limit: 15,
      reason: 'overload',
    })
    expect(untilDecision(controller, () => ({latencyMs: 30_000, status: 'timeout'}))).toMatchObject({
      limit: 7,
      reason: 'overload',
    })
    // A CKAN error (500) or a refused credential (403) is no sign of load.
    const after = untilDecision(controller, (_, index) => ({latencyMs: 10, status: index % 2 ? 500 : 403}))
    expect(after.reason).not.toBe('overload')
  })

  it('shrinks on 429 and does not grow again before Retry-After has passed', () => {
    const controller = auto()
    const clock = {at: 0}
    drive(controller, () => ({latencyMs: 10}), 200, clock)
    untilDecision(controller, () => ({latencyMs: 10}), clock)
    const before = controller.limit
    const shrunk = untilDecision(
      controller,
      (_, index) => (index === 0 ? {retryAfterMs: 5000, status: 429} : {}),
      clock,
    )
    expect(shrunk.reason).toBe('overload')
    expect(shrunk.limit).toBeLessThan(before)
    const frozen = drive(controller, () => ({latencyMs: 10}), 2000, clock)
    expect(clock.at).toBeLessThan(5000)
    expect(frozen.every((decision) => decision.limit === shrunk.limit)).toBe(true)
    expect(frozen.some((decision) => decision.reason === 'cooling')).toBe(true)
    clock.at = 6000
    const thawed = drive(controller, () => ({latencyMs: 10}), 2000, clock)
    expect(thawed.some((decision) => decision.reason === 'room')).toBe(true)
  })

  it('shrinks one step when our own calls queue beyond the target, and holds within it', () => {
    const controller = auto(32, 100)
    drive(controller, () => ({latencyMs: 10}), 2000)
    expect(controller.limit).toBe(32)
    untilDecision(controller, () => ({latencyMs: 10}))
    // 32 in flight, answers 1.5 × idle: about 11 of ours queue (more than 6·log10 32 = 9); once
    // may be a stall, twice in a row is a cut.
    expect(untilDecision(controller, () => ({latencyMs: 15}))).toMatchObject({limit: 32, reason: 'confirming'})
    expect(untilDecision(controller, () => ({latencyMs: 15}))).toMatchObject({limit: 31, reason: 'queueing'})
    // 31 in flight, answers 1.2 × idle: about 5 queue (3·log10 31 to 6·log10 31, 4.5 to 9): steady.
    expect(untilDecision(controller, () => ({latencyMs: 12}))).toMatchObject({limit: 31, reason: 'steady'})
  })

  it('judges each action against its own idle time', () => {
    const controller = auto()
    // Creates take 10 ms, lists 2 ms, interleaved: neither looks like queueing.
    drive(controller, (_, index) => (index % 2 ? {action: 'api_token_list', latencyMs: 2} : {latencyMs: 10}), 2000)
    expect(controller.baseline('api_token_list')).toBe(2)
    expect(controller.baseline('api_token_create')).toBe(10)
    expect(controller.limit).toBe(32)
  })

  it('re-measures the idle time at 1 when the site got slower for everyone, then grows again', () => {
    const controller = auto()
    drive(controller, workersSite(8), 3000)
    const before = controller.limit
    // Others now load the site: every answer takes 3 × as long, whatever we do.
    const slower: Site = (limit) => ({latencyMs: 30 * Math.max(1, limit / 8)})
    const decisions = drive(controller, slower, 4000)
    expect(decisions.some((decision) => decision.limit === 1)).toBe(true)
    expect(controller.baseline('api_token_create')).toBe(30)
    expect(controller.limit).toBeGreaterThan(1)
    expect(controller.limit).toBeLessThanOrEqual(Math.max(before, 15))
  })

  it('never changes a fixed --concurrency', () => {
    const controller = new LimitController({max: 4, mode: 'fixed'})
    const decisions = drive(controller, (_, index) => (index % 3 ? {status: 502} : {latencyMs: 500}), 500)
    expect(decisions).toEqual([])
    expect(controller.limit).toBe(4)
  })
})

describe('AdaptiveLimiter', () => {
  it('admits at most the limit, in order, and admits no one once the signal fires', async () => {
    const limiter = new AdaptiveLimiter({max: 2, mode: 'fixed'})
    const first = await limiter.admit()
    const second = await limiter.admit()
    const order: string[] = []
    const third = limiter.admit().then((slot) => {
      order.push('third')
      return slot
    })
    const controller = new AbortController()
    const fourth = limiter.admit(controller.signal)
    await Promise.resolve()
    expect(order).toEqual([])
    expect(limiter.active).toBe(2)
    first!.release()
    first!.release()
    expect((await third) === undefined).toBe(false)
    expect(limiter.active).toBe(2)
    controller.abort()
    expect(await fourth).toBeUndefined()
    second!.release()
    expect(limiter.active).toBe(1)
    expect(await limiter.admit(controller.signal)).toBeUndefined()
  })

  it('reports answer times alone and under load, the limit it used most and the overload signals', () => {
    let now = 0
    const limiter = new AdaptiveLimiter({clock: () => now, max: 3, mode: 'fixed'})
    const alone = limiter.begin('api_token_create')
    now += 10
    alone({status: 200})
    const a = limiter.begin('api_token_create')
    const b = limiter.begin('api_token_create')
    now += 30
    a({status: 200})
    b({status: 502})
    const c = limiter.begin('status_show')
    now += 5
    c({status: 200})
    const report = limiter.report()
    expect(report).toMatchObject({
      action: 'api_token_create',
      mode: 'fixed',
      overloadSignals: 1,
      requests: 4,
      settled: 3,
    })
    expect(report.latencyMs.idle).toMatchObject({count: 1})
    expect(report.latencyMs.idle!.p50).toBeCloseTo(10, 0)
    expect(report.latencyMs.underLoad).toMatchObject({count: 1})
    expect(report.latencyMs.underLoad!.p95).toBeCloseTo(30, -0.5)
  })
})

describe('AdaptiveLimiter send-ahead (auto, limit 1)', () => {
  /** A limiter on a scripted clock and timers: nothing runs until the test moves the clock. */
  function scripted() {
    let now = 0
    const timers: Array<{at: number; cancelled: boolean; run: () => void}> = []
    const limiter = new AdaptiveLimiter({
      clock: () => now,
      max: 32,
      mode: 'auto',
      timer: (run, ms) => {
        const timer = {at: now + ms, cancelled: false, run}
        timers.push(timer)
        return {cancel: () => void (timer.cancelled = true)}
      },
    })
    const advance = (to: number) => {
      now = to
      for (const timer of timers.filter((t) => !t.cancelled && t.at <= now)) {
        timer.cancelled = true
        timer.run()
      }
    }
    return {advance, limiter, now: () => now, timers}
  }

  /** Eight calls alone at limit 1, 10 ms each, 1 ms apart: the idle time (10 ms). */
  function learn(site: ReturnType<typeof scripted>) {
    for (let call = 0; call < 8; call += 1) {
      site.advance(site.now() + 1)
      const end = site.limiter.begin('api_token_create')
      site.advance(site.now() + 10)
      end({status: 200})
    }
    expect(site.limiter.controller.baseline('api_token_create')).toBe(10)
    expect(site.limiter.limit).toBe(1)
  }

  const settle = () => new Promise((resolve) => setImmediate(resolve))

  it('admits the next task twice the turnaround before the call in flight is due, one task only', async () => {
    const site = scripted()
    learn(site)
    const first = (await site.limiter.admit())!
    // The client's turnaround: 1 ms after the last answer.
    site.advance(site.now() + 1)
    const start = site.now()
    const end = site.limiter.begin('api_token_create')
    const admitted: string[] = []
    const second = site.limiter.admit().then((slot) => (admitted.push('second'), slot))
    const third = site.limiter.admit().then((slot) => (admitted.push('third'), slot))
    site.advance(start + 7.9)
    await settle()
    expect(admitted).toEqual([])
    // Due at 10 ms, lead 2 × 1 ms: the second task starts at 8 ms, while the first call is in flight.
    site.advance(start + 8)
    await settle()
    expect(admitted).toEqual(['second'])
    expect(site.limiter.active).toBe(2)
    expect(site.limiter.sentAhead).toBe(1)
    const early = site.limiter.begin('api_token_create')
    site.advance(start + 10)
    end({status: 200})
    first.release()
    await settle()
    // Back at one task in flight: the third waits for the next send-ahead, never a third at once.
    expect(admitted).toEqual(['second'])
    expect(site.limiter.active).toBe(1)
    // The second call waited for the first: it is due 10 ms after the first's answer (at 20), not
    // after it began (at 18), and the third is sent ahead of that.
    site.advance(start + 17.9)
    await settle()
    expect(admitted).toEqual(['second'])
    site.advance(start + 18)
    await settle()
    expect(admitted).toEqual(['second', 'third'])
    early({status: 200})
    ;(await second)!.release()
    ;(await third)!.release()
  })

  it("keeps the idle time of calls made alone: a sent-ahead call's wait for ours is not the site's", () => {
    const controller = auto()
    let at = 0
    for (let index = 0; index < 8; index += 1)
      controller.record({action: 'api_token_create', alone: true, at: (at += 11), latencyMs: 10, status: 200})
    expect(controller.baseline('api_token_create')).toBe(10)
    // At limit 1 every call now overlaps the one before (sent ahead) and waits 4 ms for it.
    for (let index = 0; index < 64; index += 1) {
      controller.started(2)
      controller.record({action: 'api_token_create', alone: false, at: (at += 10), latencyMs: 14, status: 200})
    }
    expect(controller.baseline('api_token_create')).toBe(10)
  })

  it('does not send ahead once the call ended, nor in fixed mode', async () => {
    const site = scripted()
    learn(site)
    const first = (await site.limiter.admit())!
    const end = site.limiter.begin('api_token_create')
    let second = false
    const waiting = site.limiter.admit().then((slot) => ((second = true), slot))
    site.advance(site.now() + 5)
    end({status: 200})
    site.advance(site.now() + 20)
    await settle()
    expect(second).toBe(false)
    expect(site.limiter.sentAhead).toBe(0)
    first.release()
    ;(await waiting)!.release()
    expect(second).toBe(true)

    let now = 0
    const fixed = new AdaptiveLimiter({clock: () => now, max: 1, mode: 'fixed', timer: () => ({cancel() {}})})
    for (let call = 0; call < 8; call += 1) {
      now += 1
      const done = fixed.begin('api_token_create')
      now += 10
      done({status: 200})
    }
    const slot = (await fixed.admit())!
    const done = fixed.begin('api_token_create')
    const blocked = fixed.admit()
    now += 100
    expect(fixed.active).toBe(1)
    expect(fixed.sentAhead).toBe(0)
    done({status: 200})
    slot.release()
    ;(await blocked)!.release()
  })
})

describe('runUnderLimit', () => {
  it('runs every item, never more at once than the limit, and rethrows the first failure after the others end', async () => {
    const limiter = new AdaptiveLimiter({max: 3, mode: 'fixed'})
    let running = 0
    let most = 0
    const done: number[] = []
    await runUnderLimit(limiter, takeFrom([1, 2, 3, 4, 5, 6, 7]), async (item) => {
      running += 1
      most = Math.max(most, running)
      await new Promise((resolve) => setImmediate(resolve))
      running -= 1
      done.push(item)
    })
    expect(done.sort()).toEqual([1, 2, 3, 4, 5, 6, 7])
    expect(most).toBe(3)

    const started: number[] = []
    const failing = runUnderLimit(limiter, takeFrom([1, 2, 3, 4, 5, 6, 7]), async (item) => {
      started.push(item)
      await new Promise((resolve) => setImmediate(resolve))
      if (item === 2) throw new Error('boom')
    })
    await expect(failing).rejects.toThrow('boom')
    expect(started.length).toBeLessThan(7)
    expect(limiter.active).toBe(0)
  })
})

describe('LatencyHistogram', () => {
  it('gives quantiles within 4 % in constant memory', () => {
    const histogram = new LatencyHistogram()
    for (let ms = 1; ms <= 1000; ms += 1) histogram.add(ms)
    expect(histogram.quantile(0.5) / 500).toBeGreaterThan(0.96)
    expect(histogram.quantile(0.5) / 500).toBeLessThan(1.04)
    expect(histogram.quantile(0.95) / 950).toBeGreaterThan(0.96)
    expect(histogram.quantile(0.95) / 950).toBeLessThan(1.04)
    expect(histogram.summary()).toMatchObject({count: 1000})
  })
})
