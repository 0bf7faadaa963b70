import {appendFileSync} from 'node:fs'

/**
 * How many CKAN API calls a bulk command keeps in flight: fixed (`--concurrency N`) or found by
 * itself (`--concurrency auto`, the default), in the family of TCP Vegas and Netflix's
 * concurrency-limits: start at 1, measure the site's idle answer time, grow while answers stay
 * near it, shrink when they show queueing, on 429/502/503/504, timeouts and `Retry-After`.
 *
 * Three parts, the first two pure (no clock, no timer, no I/O; the caller passes times in):
 * - `LimitController`: the decisions, from a sequence of samples (latency, status) of each HTTP
 *   attempt. Tested on scripted sequences (test/lib/ckan/adaptive-limit.test.ts).
 * - `AdaptiveLimiter`: the controller plus admission (at most `limit` tasks at once) and the
 *   observer the API client reports every attempt to (`begin(action)` … `end(outcome)`).
 * - `runUnderLimit`: the one "run these tasks under the limiter" loop every bulk command uses.
 *
 * Retries never multiply the load: a retry is made inside its task (the client's backoff and the
 * issuer's attempts), which keeps its one slot, so at most `limit` requests are in flight
 * whatever fails; each attempt is a sample, so failures shrink the limit they run under.
 */

/** What one HTTP attempt ended with: its status, or how it failed without one. */
export type AttemptStatus = 'network' | 'timeout' | number

export type AttemptOutcome = {
  /** `Retry-After` of the answer, in milliseconds. */
  retryAfterMs?: number
  status: AttemptStatus
}

export type LimitSample = AttemptOutcome & {
  action: string
  /** When the answer came, in milliseconds on the caller's clock (any origin). */
  at: number
  latencyMs: number
  /** The limit in force when the attempt began (a sample of a lower one says little of this one). */
  limit?: number
  /**
   * No other call of ours was in flight while it was (the limiter knows; scripted samples leave
   * it out). At limit 1 a call that overlapped another (the send-ahead) waited for ours at the
   * site: its answer time is not the site's idle time.
   */
  alone?: boolean
}

export type LimitSettings = {
  /** `--latency-budget`: others' answers stay within this factor of the idle answer time. Default 2. */
  latencyBudget?: number
  /** `--max-concurrency` (auto) or the fixed number. */
  max: number
  mode: 'auto' | 'fixed'
}

export type LimitDecision = {
  /** The limit in force after the decision (whole requests). */
  limit: number
  reason:
    | 'budget' // others' answer time would pass the budget
    | 'confirming' // over the target in this window: cut if the next one is too
    | 'cooling' // a recent probe upwards failed: wait before the next one
    | 'idle' // the limit was not reached: nothing learned about a higher one
    | 'overload' // 429/502/503/504 or timeouts
    | 'queueing' // our requests wait at the site beyond the target
    | 'room' // answers near the idle time: probe one higher
    | 'steady' // within the target
    | 'warm-up' // no idle answer time known yet
  /** The window's lower-quartile answer time over the idle one (undefined while warming up). */
  ratio?: number
}

/** Latency quantiles in milliseconds. */
export type LatencySummary = {count: number; p50: number; p95: number}

export type ConcurrencyReport = {
  /** The action most calls were made to; the latencies are its. */
  action: null | string
  /** The limit the run used most (by calls); the fixed number in fixed mode. */
  settled: number
  /** The limit at the end. */
  final: number
  /** The highest limit used. */
  highest: number
  latencyBudget: number
  latencyMs: {
    /** Answers while no other call of ours was in flight (auto: the start, measured at limit 1). */
    idle: LatencySummary | null
    /** Answers while other calls of ours were in flight. */
    underLoad: LatencySummary | null
  }
  max: number
  mode: 'auto' | 'fixed'
  /** Answers that were 429/502/503/504 or timed out. */
  overloadSignals: number
  requests: number
}

/**
 * Queued requests (Vegas' estimate, ours at the site) below which the limit grows, above which it
 * shrinks: 2 and 4 at small limits, growing with the limit's logarithm as in Netflix's VegasLimit
 * (3·log10 and 6·log10), so that on a many-worker site a few of ours always wait for the next free
 * worker (at 2 to 4 the limit settled near the worker count, where workers idle while the client
 * turns around: 8 workers reached 523/s at 8 in flight, 615/s at 16; docs/benchmarks.md).
 */
const alpha = (limit: number) => Math.max(2, 3 * Math.log10(limit))
const beta = (limit: number) => Math.max(4, 6 * Math.log10(limit))
/** Samples per decision: at least this many, and at least the limit (about one round of answers). */
const MIN_WINDOW = 16
/** The same during slow start, where a decision only doubles the limit or ends slow start. */
const MIN_SLOW_START_WINDOW = 8
/**
 * And at least this long (on the samples' clock), so that a short stall of the site or of a
 * shared machine (a GC, an fsync, a neighbour's burst) is outvoted within the window.
 */
const MIN_WINDOW_MS = 300
/**
 * During slow start, when every window so far showed room: a decision there only doubles the
 * limit or ends slow start, and a stall that slips into a short window ends it early (safe, only
 * slower). At 300 ms a window, reaching 8 took over a second, a fifth of a short run on a
 * many-worker site (docs/benchmarks.md, adaptive concurrency).
 */
const SLOW_START_WINDOW_MS = 100
/** Samples of one action whose lower quartile is a candidate for its idle answer time. */
const BASELINE_GROUP = 16
/**
 * The first group of an action, at limit 1 at the start: smaller, because every answer the run
 * waits for at limit 1 is one it could have had at the site's capacity (at 16, the start at limit
 * 1 took half a second); later groups refine it (at limit 1 they replace it, above only lower it).
 */
const FIRST_BASELINE_GROUP = 8
/** Longest wait, in windows, before probing upwards again after failed probes. */
const MAX_COOLDOWN = 32
/**
 * A window ratio up to 1 + this share of the budget's headroom (at most 1.3) is no queueing but
 * noise (jitter, a shared CPU): "near the lowest seen". Budget 2: 1.25.
 */
const NOISE_SHARE = 0.25
const OVERLOAD_STATUSES = new Set([429, 502, 503, 504])

/** The limit's decisions from samples of each attempt; pure and deterministic. */
export class LimitController {
  readonly budget: number
  readonly max: number
  readonly mode: 'auto' | 'fixed'
  /** Idle answer time per action: the lower quartile of a group of its answers (see #learnBaseline). */
  readonly #baseline = new Map<string, number>()
  #cooldown = 1
  #coolUntil = 0
  #frozenUntil = Number.NEGATIVE_INFINITY
  readonly #groups = new Map<string, number[] & {alone?: boolean}>()
  #highest: number
  #lastKind: 'grow' | 'hold' | 'shrink' = 'hold'
  #limit: number
  /** Windows in a row over the target (a cut needs two). */
  #strikes = 0
  /** Until the first decision that is not growth, the limit doubles (slow start, as TCP). */
  #slowStart = true
  #window: ReturnType<typeof emptyWindow>
  #windows = 0

  constructor(settings: LimitSettings) {
    this.mode = settings.mode
    this.max = Math.max(1, Math.floor(settings.max))
    this.budget = settings.latencyBudget ?? 2
    this.#limit = this.mode === 'fixed' ? this.max : 1
    this.#highest = this.limit
    this.#window = emptyWindow()
  }

  /** The idle answer time of an action, once known. */
  baseline(action: string): number | undefined {
    return this.#baseline.get(action)
  }

  get highest(): number {
    return this.#highest
  }

  /** The limit in force: whole requests, 1 to max. */
  get limit(): number {
    return Math.max(1, Math.min(this.max, Math.floor(this.#limit)))
  }

  /** A task started; `inFlight` counts it. The limit grows only in windows where it was reached. */
  started(inFlight: number): void {
    if (inFlight > this.#window.maxInFlight) this.#window.maxInFlight = inFlight
  }

  /** One attempt ended. Returns the decision when this sample closes a window. */
  record(sample: LimitSample): LimitDecision | undefined {
    const window = this.#window
    const ok = typeof sample.status === 'number' && sample.status < 500 && sample.status !== 429
    // Slow start's windows are short: one could hold mostly answers to calls made under the
    // previous, lower limit, which queued less, and double the limit past the site's backlog.
    if (ok && this.#slowStart && sample.limit !== undefined && sample.limit < this.limit) {
      this.#learnBaseline(sample.action, sample.latencyMs, false)
      return undefined
    }
    window.startedAt ??= sample.at - sample.latencyMs
    window.count += 1
    if (ok) {
      const base = this.#baseline.get(sample.action)
      if (base !== undefined) window.ratios.push(sample.latencyMs / base)
      const atOne = this.mode === 'auto' && this.limit === 1
      if (!(atOne && sample.alone === false)) this.#learnBaseline(sample.action, sample.latencyMs, atOne)
    } else if (sample.status === 'timeout' || OVERLOAD_STATUSES.has(sample.status as number)) {
      window.overload += 1
    }
    if (sample.retryAfterMs !== undefined)
      window.retryAfterUntil = Math.max(window.retryAfterUntil, sample.at + sample.retryAfterMs)
    if (
      this.mode === 'fixed' ||
      window.count < Math.max(this.#slowStart ? MIN_SLOW_START_WINDOW : MIN_WINDOW, this.limit)
    )
      return undefined
    if (sample.at - window.startedAt < (this.#slowStart ? SLOW_START_WINDOW_MS : MIN_WINDOW_MS)) return undefined
    this.#window = emptyWindow()
    this.#windows += 1
    return this.#decide(window, sample.at)
  }

  #decide(window: ReturnType<typeof emptyWindow>, now: number): LimitDecision {
    const previous = this.#lastKind
    const current = this.limit
    if (window.retryAfterUntil > this.#frozenUntil) this.#frozenUntil = window.retryAfterUntil
    if (window.overload > 0) {
      this.#strikes = 0
      // Multiplicative decrease, by the share of refused answers (at most halved per window): a
      // proxy refusing most calls halves the limit, one random 502 in a window trims it.
      const share = window.overload / window.count
      return this.#shrink(this.#limit * Math.max(0.5, 1 - share), 'overload', previous, undefined)
    }
    if (window.ratios.length < 3) return this.#hold('warm-up', undefined)
    // The lower quartile: our own queueing delays every answer, while a shared machine's stalls
    // (the noise) delay some; so the quartile moves with the one and hardly with the other.
    const ratio = quantile(window.ratios, 0.25)
    // Vegas: of our `current` requests, this many wait at the site instead of being served.
    const queued = current * (1 - 1 / ratio)
    // Another user's call waits behind ours: with the site saturated (our answers slower than idle)
    // it answers in about ratio × (current + 1) / current of the idle time.
    const noise = 1 + Math.min(0.3, (this.budget - 1) * NOISE_SHARE)
    const others = ratio > noise ? (ratio * (current + 1)) / current : ratio
    const over = others > this.budget || queued > beta(current)
    // Over the target once may be a stall of the site or of the machine: cut when the next window says so too.
    if (over && current > 1 && this.#strikes === 0) {
      this.#strikes = 1
      return {limit: current, ratio, reason: 'confirming'}
    }
    this.#strikes = 0
    if (others > this.budget) {
      const target = (this.#limit * this.budget) / others
      return this.#shrink(Math.min(this.#limit - 1, Math.max(this.#limit * 0.5, target)), 'budget', previous, ratio)
    }
    if (queued > beta(current)) return this.#shrink(this.#limit - 1, 'queueing', previous, ratio)
    if (queued >= alpha(current)) return this.#settle('steady', ratio)
    if (window.maxInFlight < current) return this.#settle('idle', ratio)
    if (this.#windows < this.#coolUntil || now < this.#frozenUntil) return this.#settle('cooling', ratio)
    if (current >= this.max) return this.#settle('steady', ratio)
    this.#limit = Math.min(this.max, this.#slowStart ? current * 2 : current + 1)
    this.#highest = Math.max(this.#highest, this.limit)
    if (previous === 'grow') this.#cooldown = 1
    this.#lastKind = 'grow'
    return {limit: this.limit, ratio, reason: 'room'}
  }

  #hold(reason: LimitDecision['reason'], ratio: number | undefined): LimitDecision {
    if (reason !== 'warm-up') this.#slowStart = false
    return {limit: this.limit, ratio, reason}
  }

  /**
   * The idle answer time: measured at limit 1 (the start, and whenever the limit is back at 1:
   * one call of ours cannot queue behind another, so what it sees is the site as others see it
   * without us); at higher limits a group of answers can only lower it.
   */
  #learnBaseline(action: string, latencyMs: number, alone: boolean): void {
    const group = this.#groups.get(action) ?? []
    if (group.length > 0 && group.alone !== alone) group.length = 0
    group.alone = alone
    group.push(latencyMs)
    if (group.length < (this.#baseline.has(action) ? BASELINE_GROUP : FIRST_BASELINE_GROUP)) {
      this.#groups.set(action, group)
      return
    }
    this.#groups.set(action, [])
    const candidate = quantile(group, 0.25)
    const known = this.#baseline.get(action)
    if (known === undefined || alone || candidate < known) this.#baseline.set(action, candidate)
  }

  /** Within the target: a probe that led here succeeded, so the next may come sooner. */
  #settle(reason: LimitDecision['reason'], ratio: number): LimitDecision {
    // Slow start ends where answers first show queueing (not merely an unused limit).
    if (reason !== 'idle') this.#slowStart = false
    if (this.#lastKind === 'grow') this.#cooldown = 1
    this.#lastKind = 'hold'
    return {limit: this.limit, ratio, reason}
  }

  #shrink(
    to: number,
    reason: LimitDecision['reason'],
    previous: 'grow' | 'hold' | 'shrink',
    ratio: number | undefined,
  ): LimitDecision {
    this.#limit = Math.max(1, to)
    this.#slowStart = false
    // A probe upwards that ends in a shrink: wait twice as long before the next one, so the
    // overshoot above the budget stays a small share of the run.
    if (previous === 'grow') this.#cooldown = Math.min(MAX_COOLDOWN, this.#cooldown * 2)
    this.#coolUntil = this.#windows + this.#cooldown
    this.#lastKind = 'shrink'
    return {limit: this.limit, ratio, reason}
  }
}

function emptyWindow() {
  return {
    count: 0,
    maxInFlight: 0,
    overload: 0,
    ratios: [] as number[],
    retryAfterUntil: Number.NEGATIVE_INFINITY,
    startedAt: undefined as number | undefined,
  }
}

/** The q-quantile of values, interpolated between the two nearest. */
function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  const at = (sorted.length - 1) * q
  const low = Math.floor(at)
  const high = Math.min(sorted.length - 1, low + 1)
  return sorted[low]! + (sorted[high]! - sorted[low]!) * (at - low)
}

/**
 * Latencies in logarithmic buckets (4 % wide, 0.05 ms to 20 min): quantiles within 4 %, in
 * constant memory whatever the number of calls.
 */
export class LatencyHistogram {
  #count = 0
  readonly #counts = new Map<number, number>()

  get count(): number {
    return this.#count
  }

  add(ms: number): void {
    const bucket = Math.max(0, Math.min(450, Math.ceil(Math.log(Math.max(ms, 0.05) / 0.05) / Math.log(1.04))))
    this.#counts.set(bucket, (this.#counts.get(bucket) ?? 0) + 1)
    this.#count += 1
  }

  quantile(q: number): number {
    const rank = Math.max(1, Math.ceil(q * this.#count))
    let seen = 0
    for (const bucket of [...this.#counts.keys()].sort((a, b) => a - b)) {
      seen += this.#counts.get(bucket)!
      if (seen >= rank) return round(0.05 * 1.04 ** bucket)
    }
    return 0
  }

  summary(): LatencySummary | null {
    if (this.#count === 0) return null
    return {count: this.#count, p50: this.quantile(0.5), p95: this.quantile(0.95)}
  }
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10
}

/** What the API client calls around each HTTP attempt (every retry included). */
export type RequestObserver = {begin(action: string): (outcome: AttemptOutcome) => void}

/** Runs `run` after `ms` milliseconds unless cancelled (tests pass their own). */
export type LimiterTimer = (run: () => void, ms: number) => {cancel(): void}

const realTimer: LimiterTimer = (run, ms) => {
  const timer = setTimeout(run, ms)
  timer.unref()
  return {cancel: () => clearTimeout(timer)}
}

export type AdaptiveLimiterOptions = LimitSettings & {
  /** Milliseconds, any origin; default performance.now. */
  clock?: () => number
  /** Told each decision (tests, debugging). */
  onDecision?: (decision: LimitDecision) => void
  /** The send-ahead's timer; default setTimeout (unref'd). */
  timer?: LimiterTimer
}

/** The send-ahead leads by at most this share of the idle answer time. */
const MAX_LEAD_SHARE = 0.25

/** A slot of the limiter, held by one task; `release()` once. */
export type LimitSlot = {release(): void}

/**
 * The controller with admission of tasks (a task = one user, one token: its attempts and
 * retries inside) and the observer of HTTP attempts. One per command run, shared by every
 * client of the run (`withCredential` copies keep it).
 */
export class AdaptiveLimiter implements RequestObserver {
  readonly controller: LimitController
  #active = 0
  #attempts = 0
  readonly #clock: () => number
  /**
   * HTTP attempts in flight: of which action, and when each is due (its action's idle time after
   * it began, or after the one before it is answered: a call sent ahead waits for that one).
   */
  readonly #inFlight = new Map<number, {action: string; due: number | undefined}>()
  #lastEnd: number | undefined
  /** The pending send-ahead: which attempt it follows. */
  #sendAhead: {attempt: number; cancel(): void} | undefined
  #sentAhead = 0
  readonly #timer: LimiterTimer
  /** The client's own time between an answer and its next call, at limit 1 (moving average). */
  #turnaround: number | undefined
  /** HTTP attempts in flight, and how many began so far (to tell an answer that came alone). */
  #httpInFlight = 0
  #httpStarted = 0
  readonly #latency = new Map<string, {idle: LatencyHistogram; underLoad: LatencyHistogram}>()
  /** Calls per limit in force when they began (for `settled`). */
  readonly #limitUse = new Map<number, number>()
  readonly #onDecision: ((decision: LimitDecision) => void) | undefined
  #overloadSignals = 0
  #requests = 0
  readonly #waiting: Array<(slot: LimitSlot | undefined) => void> = []

  constructor(options: AdaptiveLimiterOptions) {
    this.controller = new LimitController(options)
    this.#clock = options.clock ?? (() => performance.now())
    this.#onDecision = options.onDecision
    this.#timer = options.timer ?? realTimer
  }

  /** Tasks admitted ahead of the limit (see #armSendAhead). */
  get sentAhead(): number {
    return this.#sentAhead
  }

  /** Tasks running now. */
  get active(): number {
    return this.#active
  }

  get limit(): number {
    return this.controller.limit
  }

  /** Waits for a free slot; undefined once `signal` fires (the task must not start). */
  async admit(signal?: AbortSignal): Promise<LimitSlot | undefined> {
    if (signal?.aborted) return undefined
    if (this.#active < this.limit && this.#waiting.length === 0) return this.#grant()
    return new Promise<LimitSlot | undefined>((resolve) => {
      const onAbort = () => {
        const index = this.#waiting.indexOf(waiter)
        if (index !== -1) this.#waiting.splice(index, 1)
        resolve(undefined)
      }
      const waiter = (slot: LimitSlot | undefined) => {
        signal?.removeEventListener('abort', onAbort)
        resolve(slot)
      }
      signal?.addEventListener('abort', onAbort, {once: true})
      this.#waiting.push(waiter)
      this.#armSendAhead()
    })
  }

  begin(action: string): (outcome: AttemptOutcome) => void {
    const started = this.#clock()
    const startedAt = this.#httpStarted
    if (this.#httpInFlight === 0 && this.#lastEnd !== undefined && this.limit === 1) {
      // A retry's pause is not the client turning around.
      const gap = started - this.#lastEnd
      const base = this.controller.baseline(action)
      if (base !== undefined && gap < base)
        this.#turnaround = this.#turnaround === undefined ? gap : 0.8 * this.#turnaround + 0.2 * gap
    }
    const attempt = (this.#attempts += 1)
    // Due times matter at limit 1 only (the send-ahead): one call served at a time.
    const base = this.limit === 1 ? this.controller.baseline(action) : undefined
    let after = started
    for (const other of this.#inFlight.values()) if (other.due !== undefined) after = Math.max(after, other.due)
    this.#inFlight.set(attempt, {action, due: base === undefined ? undefined : after + base})
    this.#httpStarted += 1
    this.#httpInFlight += 1
    const alone = this.#httpInFlight === 1
    const limit = this.limit
    let ended = false
    this.#armSendAhead()
    return (outcome) => {
      if (ended) return
      ended = true
      this.#httpInFlight -= 1
      this.#inFlight.delete(attempt)
      if (this.#sendAhead?.attempt === attempt) {
        this.#sendAhead.cancel()
        this.#sendAhead = undefined
      }
      const at = this.#clock()
      // Answered: a call sent ahead behind it is served from now on.
      for (const other of this.#inFlight.values()) {
        const otherBase = other.due === undefined ? undefined : this.controller.baseline(other.action)
        if (otherBase !== undefined) other.due = at + otherBase
      }
      this.#lastEnd = at
      const latencyMs = at - started
      // Alone: nothing else of ours was in flight when it began, and nothing began meanwhile.
      const aloneThroughout = alone && this.#httpStarted === startedAt + 1
      this.#requests += 1
      this.#limitUse.set(limit, (this.#limitUse.get(limit) ?? 0) + 1)
      const overload =
        outcome.status === 'timeout' || (typeof outcome.status === 'number' && OVERLOAD_STATUSES.has(outcome.status))
      if (overload) this.#overloadSignals += 1
      else if (typeof outcome.status === 'number' && outcome.status < 500) {
        const histograms = this.#latency.get(action) ?? {
          idle: new LatencyHistogram(),
          underLoad: new LatencyHistogram(),
        }
        this.#latency.set(action, histograms)
        if (aloneThroughout) histograms.idle.add(latencyMs)
        else histograms.underLoad.add(latencyMs)
      }
      const decision = this.controller.record({...outcome, action, alone: aloneThroughout, at, latencyMs, limit})
      if (decision) {
        this.#onDecision?.(decision)
        this.#pump()
      }
    }
  }

  report(): ConcurrencyReport {
    let action: null | string = null
    let most = -1
    for (const [name, histograms] of this.#latency) {
      const calls = histograms.idle.count + histograms.underLoad.count
      if (calls > most) {
        most = calls
        action = name
      }
    }
    let settled = this.controller.mode === 'fixed' ? this.controller.max : this.limit
    let used = 0
    if (this.controller.mode === 'auto')
      for (const [limit, calls] of this.#limitUse)
        if (calls > used || (calls === used && limit > settled)) {
          used = calls
          settled = limit
        }
    const histograms = action ? this.#latency.get(action) : undefined
    return {
      action,
      final: this.limit,
      highest: this.controller.highest,
      latencyBudget: this.controller.budget,
      latencyMs: {idle: histograms?.idle.summary() ?? null, underLoad: histograms?.underLoad.summary() ?? null},
      max: this.controller.max,
      mode: this.controller.mode,
      overloadSignals: this.#overloadSignals,
      requests: this.#requests,
      settled,
    }
  }

  #grant(): LimitSlot {
    this.#active += 1
    this.controller.started(this.#active)
    let released = false
    return {
      release: () => {
        if (released) return
        released = true
        this.#active -= 1
        this.#pump()
        this.#armSendAhead()
      },
    }
  }

  /**
   * Send-ahead, at limit 1 in auto mode: one waiting task is admitted a lead before the call in
   * flight is due (its action's idle answer time after it began, or after the answer to the call
   * it was itself sent ahead of: it waited for that one), so that a one-worker site does
   * not idle while the answer travels back, the client turns around and the next call travels
   * there (on the emulator's one worker, 2 ms of each 14: fixed 1 reached 70 tokens/s, fixed 2 81/s).
   * The lead is twice the turnaround the client sees between an answer and its next call (the
   * two ways of the call are on top of it, and unseen), at most a quarter of the idle time. At
   * most one task beyond the limit, and only while the call it follows is in flight: another
   * user's call waits at most the lead longer than at limit 1, where a limit of 2 on one worker
   * makes it wait for two of ours (beyond the default budget).
   */
  #armSendAhead(): void {
    if (this.controller.mode !== 'auto' || this.limit !== 1 || this.#sendAhead || this.#turnaround === undefined) return
    if (this.#active !== 1 || this.#waiting.length === 0 || this.#inFlight.size !== 1) return
    const [attempt, call] = this.#inFlight.entries().next().value!
    const base = this.controller.baseline(call.action)
    if (base === undefined || call.due === undefined) return
    const lead = Math.min(MAX_LEAD_SHARE * base, 2 * this.#turnaround)
    const fire = () => {
      this.#sendAhead = undefined
      if (!this.#inFlight.has(attempt) || this.limit !== 1 || this.#active !== 1 || this.#waiting.length === 0) return
      this.#sentAhead += 1
      this.#waiting.shift()!(this.#grant())
    }
    const wait = call.due - lead - this.#clock()
    if (wait <= 0) fire()
    else this.#sendAhead = {attempt, ...this.#timer(fire, wait)}
  }

  #pump(): void {
    while (this.#waiting.length > 0 && this.#active < this.limit) this.#waiting.shift()!(this.#grant())
  }
}

/** `--concurrency auto|N`, `--max-concurrency`, `--latency-budget` as the workflows take them. */
export type ConcurrencyOptions = {
  concurrency: 'auto' | number
  latencyBudget?: number
  maxConcurrency?: number
}

export const DEFAULT_MAX_CONCURRENCY = 32
export const DEFAULT_LATENCY_BUDGET = 2

export function createLimiter(
  options: ConcurrencyOptions,
  extra: Partial<AdaptiveLimiterOptions> = {},
): AdaptiveLimiter {
  const auto = options.concurrency === 'auto'
  // CKAN_MIGRATE_LIMIT_TRACE=FILE: every decision appended to FILE, one JSON line each (diagnosis).
  const trace = process.env.CKAN_MIGRATE_LIMIT_TRACE
  const onDecision =
    extra.onDecision ??
    (trace
      ? (decision: LimitDecision) => appendFileSync(trace, `${JSON.stringify({at: Date.now(), ...decision})}\n`)
      : undefined)
  return new AdaptiveLimiter({
    ...extra,
    onDecision,
    latencyBudget: options.latencyBudget ?? DEFAULT_LATENCY_BUDGET,
    max: auto ? (options.maxConcurrency ?? DEFAULT_MAX_CONCURRENCY) : (options.concurrency as number),
    mode: auto ? 'auto' : 'fixed',
  })
}

/**
 * Runs tasks under the limiter: `next()` hands out the next item (undefined when there are no
 * more), `work(item)` does one. At most `limit` run at once, the limit changing as the run
 * goes; no new task starts once `signal` fires or `stop()` is true. The first error stops new
 * tasks and is rethrown after the running ones end.
 */
export async function runUnderLimit<T>(
  limiter: AdaptiveLimiter,
  next: () => Promise<T | undefined> | T | undefined,
  work: (item: T) => Promise<void>,
  options: {signal?: AbortSignal; stop?: () => boolean} = {},
): Promise<void> {
  let failure: {error: unknown} | undefined
  const stopping = () => Boolean(failure || options.signal?.aborted || options.stop?.())
  const worker = async (): Promise<void> => {
    while (!stopping()) {
      const slot = await limiter.admit(options.signal)
      if (!slot) return
      try {
        if (stopping()) return
        const item = await next()
        if (item === undefined) return
        await work(item)
      } catch (error) {
        failure ??= {error}
        return
      } finally {
        slot.release()
      }
    }
  }
  await Promise.all(Array.from({length: limiter.controller.max}, worker))
  if (failure) throw failure.error
}

/** `next()` over an array or any iterable, for runUnderLimit. */
export function takeFrom<T>(items: Iterable<T>): () => T | undefined {
  const iterator = items[Symbol.iterator]()
  return () => {
    const {done, value} = iterator.next()
    return done ? undefined : value
  }
}
