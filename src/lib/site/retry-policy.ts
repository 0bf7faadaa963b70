/**
 * The one retry and deadline policy of the CKAN API client (ckan-api-client.ts), and the attempt
 * budget of the token protocol (run/token-issuer.ts). Every call the client makes, GET or POST,
 * goes through the same loop, which asks `retryDelayMs` after each failed attempt whether, and
 * after how long, to try again.
 *
 * How a call may be repeated depends on its replay class:
 * - 'safe': reads and idempotent writes (api_token_revoke). Retried after HTTP 408, 429, 500,
 *   502, 503 and 504, after a timeout, and after any connection failure except TLS and DNS ones
 *   (those do not heal by themselves).
 * - 'before-send': a write that must never be replayed once it may have reached CKAN
 *   (api_token_create). Retried only when CKAN surely did nothing: a 429, or a connection that
 *   was refused or never opened. Anything else after sending (a timeout, a reset, a 5xx, a 2xx
 *   that is not JSON) is an OutcomeUnknownError, for the caller to reconcile.
 *
 * The wait before a retry: the answer's Retry-After (after a 429 or, for 'safe' calls, a 503),
 * at most two minutes, without jitter; otherwise a backoff of 0.3 s doubling per retry, fully
 * jittered, at most 10 s.
 *
 * The attempt budget: one number, `attempts` (8). One unit of work makes at most that many HTTP
 * attempts: one call with its retries, or (run/token-issuer.ts) one user's token, whose
 * protocol rounds (after an OutcomeUnknownError it lists the user's tokens, revokes any it did
 * not receive and creates again) and the client's retries within them all spend one
 * AttemptBudget: every api_token_create, api_token_list and api_token_revoke sent for the user.
 * Nothing multiplies: a retried list inside a protocol round spends the user's budget too. A
 * resumed run (the same --out) starts a fresh budget.
 *
 * The deadline. `callTimeoutMs` (--timeout) bounds one call, all its attempts and the waits
 * between them included: each attempt may wait only for what is left of it (a 'safe' call's
 * attempt at most half of it, so a stalled attempt leaves time for a retry), and a retry whose
 * wait would end past it is not made (the last failure is reported). An interrupt (Ctrl-C,
 * SIGTERM: the command's AbortSignal) ends every wait at once, starts no new attempt, and lets an
 * attempt in flight finish for at most `interruptGraceMs` (a create CKAN is answering is then
 * stored, not left for the next run to reconcile), so a command ends within 2 s whatever the
 * server does.
 */

/** How a call may be repeated after a failure (see above). */
export type Replay = 'before-send' | 'safe'

/** What one failed attempt ended with, as far as the policy cares. */
export type AttemptFailure =
  | {code: string | undefined; kind: 'network'}
  | {kind: 'status'; retryAfter: string | undefined; status: number}
  | {kind: 'timeout'}

export type RetryPolicy = {
  /** HTTP attempts of one unit of work: one call (retries included), or one user's token. */
  readonly attempts: number
  /** The longest backoff between two attempts. */
  readonly backoffLimitMs: number
  /** Milliseconds one call may take, every attempt and wait included: --timeout. */
  readonly callTimeoutMs: number
  /** How long an attempt in flight may still run after an interrupt. */
  readonly interruptGraceMs: number
  /** The longest Retry-After honoured (a longer one is cut to this). */
  readonly maxRetryAfterMs: number
  /** Retries of one call after its first attempt: `attempts` - 1 (fewer only in tests of the client). */
  readonly retries: number
}

const ATTEMPTS = 8

export const DEFAULT_RETRY_POLICY: RetryPolicy = Object.freeze({
  attempts: ATTEMPTS,
  backoffLimitMs: 10_000,
  callTimeoutMs: 30_000,
  interruptGraceMs: 1000,
  maxRetryAfterMs: 120_000,
  retries: ATTEMPTS - 1,
})

/** The default policy with a client's --timeout (and, for tests of the client, fewer retries). */
export function retryPolicy(overrides: {retries?: number; timeoutMs?: number} = {}): RetryPolicy {
  return Object.freeze({
    ...DEFAULT_RETRY_POLICY,
    ...(overrides.timeoutMs === undefined ? {} : {callTimeoutMs: overrides.timeoutMs}),
    ...(overrides.retries === undefined ? {} : {retries: overrides.retries}),
  })
}

/**
 * Attempts left for one unit of work: one call, or (token-issuer.ts) one user's token, shared
 * between the protocol's rounds and the client's retries within them.
 */
export class AttemptBudget {
  readonly limit: number
  #used = 0

  constructor(limit: number) {
    this.limit = limit
  }

  get left(): number {
    return Math.max(0, this.limit - this.#used)
  }

  /** Attempts spent so far. */
  get used(): number {
    return this.#used
  }

  /** Counts one attempt. */
  spend(): void {
    this.#used += 1
  }
}

/** TLS failures: a certificate that is not trusted, expired or for another host. */
export const TLS_CODE = /^(CERT_|ERR_TLS_|ERR_SSL_|SELF_SIGNED_|DEPTH_ZERO_|UNABLE_TO_|EPROTO$|HOSTNAME_MISMATCH)/
/** DNS failures: the host name is not known (or not yet). */
export const DNS_CODES = new Set(['EAI_AGAIN', 'ENOTFOUND'])
/** Failures where the request surely never left: a connection that was refused or never opened. */
const REFUSED_CODES = new Set(['ECONNREFUSED', 'UND_ERR_CONNECT_TIMEOUT'])

/**
 * After failed attempt number `attempt` (1, 2, …) of a call: milliseconds to wait before the
 * next one, or undefined when the failure is final (or the call's retries are spent).
 */
export function retryDelayMs(
  policy: RetryPolicy,
  replay: Replay,
  failure: AttemptFailure,
  attempt: number,
): number | undefined {
  if (attempt > policy.retries) return undefined
  if (!isRetried(replay, failure)) return undefined
  if (failure.kind === 'status' && (failure.status === 429 || (replay === 'safe' && failure.status === 503))) {
    const after = retryAfterMs(failure.retryAfter)
    if (after !== undefined) return Math.min(policy.maxRetryAfterMs, after)
  }
  return backoffMs(policy, attempt)
}

/** The pause between two rounds of the token protocol (round 1, 2, …): jittered, at most 2 s. */
export function protocolPauseMs(round: number): number {
  return Math.random() * Math.min(2000, 100 * 2 ** round)
}

function isRetried(replay: Replay, failure: AttemptFailure): boolean {
  if (replay === 'before-send') {
    if (failure.kind === 'status') return failure.status === 429
    if (failure.kind === 'timeout') return false
    return failure.code !== undefined && REFUSED_CODES.has(failure.code)
  }
  if (failure.kind === 'status') return [408, 429, 500, 502, 503, 504].includes(failure.status)
  if (failure.kind === 'timeout') return true
  return !(failure.code && (TLS_CODE.test(failure.code) || DNS_CODES.has(failure.code)))
}

/** Backoff before retry number `attempt`: 0.3 s doubling, fully jittered, at most backoffLimitMs. */
function backoffMs(policy: RetryPolicy, attempt: number): number {
  return Math.min(policy.backoffLimitMs, Math.random() * 0.3 * 2 ** (attempt - 1) * 1000)
}

/** Retry-After (seconds or an HTTP date) in ms, not negative; undefined when absent or unreadable. */
function retryAfterMs(header: string | undefined): number | undefined {
  const value = header?.trim()
  if (!value) return undefined
  const ms = /^\d+$/.test(value) ? Number(value) * 1000 : Date.parse(value) - Date.now()
  return Number.isFinite(ms) ? Math.max(0, ms) : undefined
}
