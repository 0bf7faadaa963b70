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
 * The attempt budget. One call makes at most 1 + `retries` attempts. The token protocol adds
 * its own rounds on top (after an OutcomeUnknownError it lists the user's tokens, revokes any
 * it did not receive and creates again: protocol, not transport retry), but it shares one
 * AttemptBudget per user with the client's retries of api_token_create, so however the
 * failures fall, one user costs at most `tokenAttemptsPerUser` (8) api_token_create sends in
 * a run; a failed check of the user's tokens counts as one of those attempts. A resumed run
 * (the same --out) starts a fresh budget.
 *
 * The deadline. `attemptTimeoutMs` (--timeout) bounds each attempt: the wait for the answer's
 * headers, then for each chunk of its body. There is no deadline per call (retries and their
 * waits come on top); one would be a field here, checked in the client's loop.
 */

/** How a call may be repeated after a failure (see above). */
export type Replay = 'before-send' | 'safe'

/** What one failed attempt ended with, as far as the policy cares. */
export type AttemptFailure =
  | {code: string | undefined; kind: 'network'}
  | {kind: 'status'; retryAfter: string | undefined; status: number}
  | {kind: 'timeout'}

export type RetryPolicy = {
  /** Milliseconds one attempt may wait for an answer (per attempt, not per call): --timeout. */
  readonly attemptTimeoutMs: number
  /** The longest backoff between two attempts. */
  readonly backoffLimitMs: number
  /** The longest Retry-After honoured (a longer one is cut to this). */
  readonly maxRetryAfterMs: number
  /** Retries of one call after its first attempt. */
  readonly retries: number
  /** api_token_create attempts per user and run, the client's retries included (token-issuer.ts). */
  readonly tokenAttemptsPerUser: number
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = Object.freeze({
  attemptTimeoutMs: 30_000,
  backoffLimitMs: 10_000,
  maxRetryAfterMs: 120_000,
  retries: 4,
  tokenAttemptsPerUser: 8,
})

/** The default policy with a client's --timeout (and, for tests of the client, fewer retries). */
export function retryPolicy(overrides: {retries?: number; timeoutMs?: number} = {}): RetryPolicy {
  return Object.freeze({
    ...DEFAULT_RETRY_POLICY,
    ...(overrides.timeoutMs === undefined ? {} : {attemptTimeoutMs: overrides.timeoutMs}),
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
