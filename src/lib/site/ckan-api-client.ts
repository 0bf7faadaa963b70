import {Agent, request as undiciRequest} from 'undici'

import type {AttemptStatus, RequestObserver} from './adaptive-limit.js'

import {EXIT_CODES, MigrateError} from '../errors.js'
import {readFailure, readInputTextSync, SMALL_FILE_LIMIT} from '../fs/input-file.js'
import {Secret} from '../secret.js'
import {
  CkanApiError,
  CkanTlsError,
  CkanUnreachableError,
  describeCkanError,
  OutcomeUnknownError,
} from './ckan-api-errors.js'
import {decodeJwtPayload} from './jwt.js'
import {
  AttemptBudget,
  type AttemptFailure,
  DNS_CODES,
  type Replay,
  retryDelayMs,
  retryPolicy,
  type RetryPolicy,
  TLS_CODE,
} from './retry-policy.js'

export {CkanApiError, CkanTlsError, CkanUnreachableError, OutcomeUnknownError} from './ckan-api-errors.js'
export {AttemptBudget, type Replay} from './retry-policy.js'

export type CkanApiClientOptions = {
  /** PEM file with the CA certificate(s) to trust (private CAs). TLS is always verified. */
  caCertPath?: string
  /** Base URL of the site, e.g. https://data.example.org (a path prefix such as /ckan is kept). */
  ckanUrl: URL
  /** A sysadmin's token or (2.9) legacy key. Absent: anonymous calls only. */
  credential?: Secret
  /** The header carrying the credential, raw (never "Bearer "); default Authorization. Chosen by token-header.ts. */
  headerName?: string
  /** Told about every HTTP attempt (retries included): the run's concurrency limiter. */
  observer?: RequestObserver
  /** Retries of one call; default the policy's (retry-policy.ts). */
  retryLimit?: number
  /**
   * The command's interrupt (Ctrl-C, SIGTERM): ends every retry wait at once and every attempt in
   * flight within the policy's grace; the call then fails with exit 130 (retry-policy.ts).
   */
  signal?: AbortSignal
  /** Milliseconds one call may take, its retries and their waits included (--timeout); default 30 000. */
  timeoutMs?: number
}

export type CkanStatus = {ckanVersion: string; extensions: string[]; siteUrl: string}

export type CkanApiUser = {
  email: string | null
  id: string
  name: string
  state: string
  sysadmin: boolean
}

/** One row of api_token_list. `id` is the jti: with the signing secret it makes a working token. */
export type ApiTokenSummary = {
  createdAt: string
  id: Secret
  lastAccess: string | null
  name: string
  userId: string
}

export type CreatedApiToken = {
  /** `exp` of the JWT (expire_api_token), as an ISO date; null when the token never expires. */
  expiresAt: string | null
  /** `iat` of the JWT as an ISO date. */
  issuedAt: string | null
  jti: Secret
  token: Secret
}

export type CreateApiTokenOptions = {
  expiresIn?: number
  name: string
  unit?: number
  /** User name or id. */
  user: string
}

export type CallActionOptions = {
  /** Send no credential (status_show). */
  anonymous?: boolean
  method?: 'GET' | 'POST'
  /** Default: 'safe' for GET, 'before-send' for POST (retry-policy.ts). */
  replay?: Replay
  /** The attempts left for a larger unit of work (token-issuer.ts: one user's token); default this call's. */
  budget?: AttemptBudget
}

type ActionEnvelope<T> = {result: T; success: boolean}

/** One request, as the loop in #send sends it (and sends it again). */
type ActionRequest = {
  action: string
  body: string | undefined
  /** Counts every attempt; a caller's (token-issuer.ts) when it shares one over several calls. */
  budget: AttemptBudget
  headers: Record<string, string>
  method: 'GET' | 'POST'
  replay: Replay
  secrets: Secret[]
  url: string
}

/** Failures where the request surely never reached CKAN. */
const NOT_SENT_CODES = new Set([
  'EAI_AGAIN',
  'ECONNREFUSED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'UND_ERR_CONNECT_TIMEOUT',
])

/**
 * CKAN's action API (`/api/3/action/<name>`), for CKAN 2.9 to 2.11. The credential is sent raw
 * in one header (Authorization by default), never together with another one, so a token is
 * tested alone. Every call, GET or POST, goes through one loop (#send) on undici's request() with
 * the client's keep-alive Agent, retried by the one policy of retry-policy.ts; every error is
 * translated at this edge (ckan-api-errors.ts).
 */
export class CkanApiClient {
  readonly ckanUrl: URL
  /** The retry and deadline rules of every call (retry-policy.ts). */
  readonly retryPolicy: RetryPolicy
  /** Base of every action URL, ending in `/api/3/action/`. */
  readonly #actionBase: string
  readonly #agent: Agent
  readonly #credential: Secret | undefined
  readonly #headerName: string
  readonly #interrupt: InterruptWatch
  readonly #options: CkanApiClientOptions

  constructor(options: CkanApiClientOptions, shared?: {agent: Agent; interrupt: InterruptWatch}) {
    assertUsableCkanUrl(options.ckanUrl)
    this.#options = options
    this.ckanUrl = options.ckanUrl
    this.#credential = options.credential
    this.#headerName = (options.headerName ?? 'Authorization').toLowerCase()
    this.retryPolicy = retryPolicy({retries: options.retryLimit, timeoutMs: options.timeoutMs})
    this.#agent = shared ? shared.agent : createAgent(options.caCertPath)
    this.#interrupt = shared ? shared.interrupt : new InterruptWatch(options.signal)
    const base = options.ckanUrl.href.endsWith('/') ? options.ckanUrl.href : `${options.ckanUrl.href}/`
    this.#actionBase = new URL('api/3/action/', base).href
  }

  /**
   * Calls any action. Params may hold Secrets: they are revealed only into the request (a GET's
   * query, a POST's JSON body) and redacted from anything CKAN echoes back.
   */
  async callAction<T>(
    action: string,
    params: Record<string, unknown> = {},
    options: CallActionOptions = {},
  ): Promise<T> {
    const method = options.method ?? 'POST'
    const replay = options.replay ?? (method === 'GET' ? 'safe' : 'before-send')
    const secrets: Secret[] = this.#credential ? [this.#credential] : []
    const plain: Record<string, unknown> = {}
    for (const [key, value] of Object.entries(params)) {
      if (value instanceof Secret) {
        secrets.push(value)
        plain[key] = value.reveal()
      } else if (value !== undefined) {
        plain[key] = value
      }
    }
    let url = this.#actionBase + action
    if (method === 'GET') {
      const query = new URLSearchParams(Object.entries(plain).map(([key, value]) => [key, String(value)])).toString()
      if (query) url += `?${query}`
    }
    return this.#send<T>({
      action,
      body: method === 'GET' ? undefined : JSON.stringify(plain),
      budget: options.budget ?? new AttemptBudget(1 + this.retryPolicy.retries),
      headers: this.#headers(method, !options.anonymous),
      method,
      replay,
      secrets,
      url,
    })
  }

  /** Whether the command was interrupted: no new attempt starts (callers stop their own rounds). */
  get interrupted(): boolean {
    return this.#interrupt.at !== undefined
  }

  /** Closes idle keep-alive connections (call when done, so the process can exit promptly). */
  async close(): Promise<void> {
    await this.#agent.close()
  }

  /**
   * api_token_create for `user`. Returns the JWT and its jti (decoded from the payload: CKAN does
   * not return it). Never replayed after it may have reached CKAN: an OutcomeUnknownError then.
   * `budget`: the attempts left for this user's token (token-issuer.ts), spent by this call's
   * retries too; by default this call's own (1 + the policy's retries).
   */
  async createApiToken(options: CreateApiTokenOptions, budget?: AttemptBudget): Promise<CreatedApiToken> {
    const params: Record<string, unknown> = {name: options.name, user: options.user}
    if (options.expiresIn !== undefined) params.expires_in = options.expiresIn
    if (options.unit !== undefined) params.unit = options.unit
    // The hot path of issue-tokens: no Secret in the params, so no pass over them.
    const result = await this.#send<{id?: unknown; token?: unknown}>({
      action: 'api_token_create',
      body: JSON.stringify(params),
      budget: budget ?? new AttemptBudget(1 + this.retryPolicy.retries),
      headers: this.#headers('POST', true),
      method: 'POST',
      replay: 'before-send',
      secrets: this.#credential ? [this.#credential] : [],
      url: `${this.#actionBase}api_token_create`,
    })
    if (typeof result?.token !== 'string') {
      throw new OutcomeUnknownError('api_token_create', 'CKAN answered without a token')
    }
    const token = new Secret(result.token)
    const payload = decodeJwtPayload(token)
    // CKAN 2.12 returns the token's id (its jti) next to it (ckan/logic/action/create.py,
    // dev-v2.12: add_extra({'token': token, 'id': token_obj.id})): use it when present; older
    // versions return only the JWT, whose payload names the jti.
    const id = typeof result.id === 'string' && result.id !== '' ? result.id : undefined
    if (!payload && !id) {
      throw new MigrateError('CKAN returned a token that is not a JWT with a jti', {
        exitCode: EXIT_CODES.ckanRejected,
        suggestion:
          'A plugin changes how tokens are encoded (IApiToken); ckan-migrate needs CKAN’s default JWT tokens.',
      })
    }
    return {
      expiresAt: payload?.exp === undefined ? null : new Date(payload.exp * 1000).toISOString(),
      issuedAt: payload && Number.isFinite(payload.iat) ? new Date(payload.iat * 1000).toISOString() : null,
      jti: new Secret(id ?? payload!.jti),
      token,
    }
  }

  /** get_site_user (a sysadmin may call it over HTTP): the site user's name. Its apikey is dropped. */
  async getSiteUser(): Promise<{name: string}> {
    const result = await this.callAction<{name?: unknown} | null>('get_site_user', {}, {method: 'GET'})
    if (typeof result?.name !== 'string' || result.name === '') {
      throw new CkanApiError('get_site_user', 200, 'the answer names no user (not a CKAN action API answer)')
    }
    return {name: result.name}
  }

  /**
   * api_token_list for a user (name or id). Sends both `user` (2.9) and `user_id` (2.10+), which
   * every version accepts. 200 proves the caller is that user or a sysadmin; 403 otherwise.
   */
  async listApiTokens(user: string, budget?: AttemptBudget): Promise<ApiTokenSummary[]> {
    const rows = await this.callAction<Array<Record<string, unknown>>>(
      'api_token_list',
      {user, user_id: user},
      {budget, method: 'GET'},
    )
    return (Array.isArray(rows) ? rows : []).map((row) => ({
      createdAt: String(row.created_at ?? ''),
      id: new Secret(String(row.id)),
      lastAccess: row.last_access === null || row.last_access === undefined ? null : String(row.last_access),
      name: String(row.name ?? ''),
      userId: String(row.user_id ?? ''),
    }))
  }

  /** api_token_revoke by jti. Idempotent (a sysadmin revoking an unknown jti is a no-op), so retried. */
  async revokeApiToken(jti: Secret, budget?: AttemptBudget): Promise<void> {
    await this.callAction<null>('api_token_revoke', {jti}, {budget, replay: 'safe'})
  }

  /** status_show, anonymously: version, plugins, site URL. Proves the action API answers. */
  async statusShow(): Promise<CkanStatus> {
    const result = await this.callAction<Record<string, unknown>>('status_show', {}, {anonymous: true, method: 'GET'})
    if (typeof result?.ckan_version !== 'string') {
      throw this.#notActionApi('status_show', 'HTTP 200 without a ckan_version')
    }
    return {
      ckanVersion: result.ckan_version,
      extensions: Array.isArray(result.extensions) ? result.extensions.map(String) : [],
      siteUrl: String(result.site_url ?? ''),
    }
  }

  /** user_show (name or id). email is only there for sysadmin callers and the user. */
  async userShow(id: string): Promise<CkanApiUser> {
    const result = await this.callAction<Record<string, unknown>>('user_show', {id}, {method: 'GET'})
    return {
      email: typeof result.email === 'string' ? result.email : null,
      id: String(result.id),
      name: String(result.name),
      state: String(result.state ?? 'active'),
      sysadmin: result.sysadmin === true,
    }
  }

  /** The same site and connections with another credential (verify: each token alone). */
  withCredential(credential: Secret | undefined): CkanApiClient {
    return new CkanApiClient({...this.#options, credential}, {agent: this.#agent, interrupt: this.#interrupt})
  }

  /** The same client (connections shared) sending its credential in another header. */
  withHeader(headerName: string): CkanApiClient {
    return new CkanApiClient({...this.#options, headerName}, {agent: this.#agent, interrupt: this.#interrupt})
  }

  /** The header the credential goes in. */
  get headerName(): string {
    return this.#options.headerName ?? 'Authorization'
  }

  #headers(method: 'GET' | 'POST', withCredential: boolean): Record<string, string> {
    const headers: Record<string, string> = {accept: 'application/json'}
    if (method === 'POST') headers['content-type'] = 'application/json'
    if (this.#credential && withCredential) headers[this.#headerName] = this.#credential.reveal()
    return headers
  }

  /**
   * The one request path: sends the request with undici's request() on the client's Agent (no
   * Request/Response objects, no web streams) and, while the policy says so, the budget lasts and
   * the call's deadline (--timeout) allows, sends it again after a failed attempt; the last
   * failure is thrown, translated. Each attempt may wait only for what is left of the deadline,
   * and the command's interrupt stops the loop (retry-policy.ts).
   */
  async #send<T>(request: ActionRequest): Promise<T> {
    const {action, budget, replay, secrets} = request
    const policy = this.retryPolicy
    const deadline = Date.now() + policy.callTimeoutMs
    for (let attempt = 1; ; attempt += 1) {
      // After an interrupt: no retry, and a new call only within the grace (the end-of-run checks).
      if (this.#interrupt.graceLeft(policy.interruptGraceMs) <= 0 || (attempt > 1 && this.interrupted))
        throw this.#interrupted(action, replay, false)
      budget.spend()
      let failure: AttemptFailure
      let error: Error
      const end = this.#options.observer?.begin(action)
      const limit = attemptLimit(attemptDeadline(policy, replay, deadline), this.#interrupt, policy.interruptGraceMs)
      try {
        const remaining = Math.max(1, deadline - Date.now())
        const response = await undiciRequest(request.url, {
          body: request.body,
          bodyTimeout: remaining,
          dispatcher: this.#agent,
          headers: request.headers,
          headersTimeout: remaining,
          method: request.method,
          signal: limit.signal,
        }).catch((caught: unknown) => {
          end?.({status: attemptFailure(caught)})
          throw caught
        })
        const status = response.statusCode
        const retryAfterHeader = response.headers['retry-after']
        end?.({
          retryAfterMs: retryAfterMs(Array.isArray(retryAfterHeader) ? retryAfterHeader[0] : retryAfterHeader),
          status,
        })
        const text = await response.body.text()
        if (status >= 200 && status < 300) return this.#result<T>(action, text, replay, secrets)
        const retryAfter = response.headers['retry-after']
        failure = {kind: 'status', retryAfter: Array.isArray(retryAfter) ? retryAfter[0] : retryAfter, status}
        const type = String(response.headers['content-type'] ?? '')
        error = this.#translateStatus(action, status, errorData(text, type), replay, secrets)
      } catch (caught) {
        if (caught instanceof MigrateError) throw caught
        if (caught instanceof AttemptStopped && caught.why === 'interrupt')
          throw this.#interrupted(action, replay, true)
        const code = causeCode(caught)
        if (code?.startsWith('UND_ERR_INVALID')) throw unexpected(action, caught, secrets)
        if (caught instanceof AttemptStopped || code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') {
          failure = {kind: 'timeout'}
          error = this.#timedOut(action, replay, attempt)
        } else {
          failure = {code, kind: 'network'}
          error = this.#translateNetwork(action, caught, replay, secrets)
        }
      } finally {
        limit.done()
      }
      const delay = budget.left > 0 ? retryDelayMs(policy, replay, failure, attempt) : undefined
      // A retry that could not start before the deadline is not made: the last failure stands.
      if (delay === undefined || Date.now() + delay >= deadline) throw error
      if (!(await this.#interrupt.sleep(delay))) throw this.#interrupted(action, replay, false)
    }
  }

  /** A 2xx answer's result; one that is not CKAN's envelope is an error (never retried). */
  #result<T>(action: string, text: string, replay: Replay, secrets: Secret[]): T {
    let envelope: ActionEnvelope<T>
    try {
      envelope = JSON.parse(text) as ActionEnvelope<T>
    } catch {
      // A login page, a proxy, a wrong URL; or, for a write, a CKAN that may have done it.
      if (replay === 'before-send') throw new OutcomeUnknownError(action, 'the answer was not JSON')
      throw this.#notActionApi(action, 'HTTP 200 with a page that is not JSON')
    }
    if (!envelope || typeof envelope !== 'object' || envelope.success !== true) {
      const message = describeCkanError(envelope, (text) => redact(text, secrets)) ?? 'not a CKAN action API answer'
      throw new CkanApiError(action, 200, message)
    }
    return envelope.result
  }

  /** A connection-level failure (refused, DNS, TLS, reset). */
  #translateNetwork(action: string, error: unknown, replay: Replay, secrets: Secret[]): Error {
    const code = causeCode(error)
    if (!code && !(error instanceof Error)) return unexpected(action, error, secrets)
    const detail = redact(causeMessage(error) ?? 'network error', secrets)
    if (code && TLS_CODE.test(code)) return new CkanTlsError(action, `${code} (${this.ckanUrl.host})`)
    if (code && DNS_CODES.has(code)) {
      return new CkanUnreachableError(
        action,
        `host ${this.ckanUrl.hostname} not found (${code})`,
        'Check the host name in --ckan-url.',
      )
    }
    if (code === 'ECONNREFUSED' || detail === 'bad port') {
      const port = this.ckanUrl.port || (this.ckanUrl.protocol === 'https:' ? '443' : '80')
      return new CkanUnreachableError(
        action,
        `connection refused on port ${port} of ${this.ckanUrl.hostname} (nothing listens there)`,
        `Check the port in --ckan-url (CKAN's web server or proxy, usually ${this.ckanUrl.protocol === 'https:' ? '443' : '80'}), and that CKAN runs.`,
      )
    }
    if (code && NOT_SENT_CODES.has(code)) return new CkanUnreachableError(action, `${code} at ${this.ckanUrl.host}`)
    if (replay === 'before-send')
      return new OutcomeUnknownError(action, `connection lost after sending (${code ?? detail})`)
    return new CkanUnreachableError(action, `connection lost (${code ?? detail})`)
  }

  /** An answer with a status that is not 2xx; `data` is its body (parsed when JSON). */
  #translateStatus(action: string, status: number, data: unknown, replay: Replay, secrets: Secret[]): Error {
    const described = describeCkanError(data, (text) => redact(text, secrets))
    if (status >= 500 || status === 408) {
      // A proxy's 502/504 (or a CKAN 500 after its commit) can hide a token CKAN did create.
      const reason = `HTTP ${status}${described ? `: ${redact(described, secrets)}` : ''}`
      if (replay === 'before-send') return new OutcomeUnknownError(action, reason, status)
      return new CkanApiError(action, status, described ? redact(described, secrets) : 'server error')
    }
    if (described === undefined) {
      if (status === 429) return new CkanApiError(action, status, 'too many requests')
      return this.#notActionApi(action, `HTTP ${status} that is not a CKAN action API answer`)
    }
    return new CkanApiError(action, status, redact(described, secrets))
  }

  /**
   * The call ended by the command's interrupt. `sent`: an attempt was in flight, so a write's
   * outcome is unknown (the run's journal has it: the next run reconciles it first).
   */
  #interrupted(action: string, replay: Replay, sent: boolean): Error {
    const options = {exitCode: EXIT_CODES.interrupted}
    if (sent && replay === 'before-send')
      return new OutcomeUnknownError(action, 'interrupted before CKAN answered', undefined, options)
    return new CkanUnreachableError(
      action,
      sent ? 'interrupted before CKAN answered' : 'interrupted',
      'Run the same command again to go on.',
      options,
    )
  }

  /** No answer within the call's deadline (--timeout), over `attempts` attempts. */
  /** The server answered, but not as CKAN's action API: a wrong URL, path prefix or proxy rule. */
  #notActionApi(action: string, what: string): Error {
    return new CkanUnreachableError(
      action,
      what,
      'Check --ckan-url: the site’s base URL (ckan.site_url), with the path prefix if CKAN is served under one (https://HOST/ckan), and that no proxy or login page answers /api/3/action/ instead of CKAN.',
      {message: `${this.#actionBase} is not a CKAN action API: ${action} got ${what}`},
    )
  }

  #timedOut(action: string, replay: Replay, attempts: number): Error {
    const timeoutMs = this.retryPolicy.callTimeoutMs
    const seconds = timeoutMs % 1000 === 0 ? `${timeoutMs / 1000} s` : `${timeoutMs} ms`
    const reason = `no answer within ${seconds} (--timeout, ${attempts} attempt${attempts === 1 ? '' : 's'})`
    if (replay === 'before-send') return new OutcomeUnknownError(action, reason)
    return new CkanUnreachableError(
      action,
      reason,
      'Check that CKAN is up; raise --timeout for a slow site, then run the same command again.',
    )
  }
}

function unexpected(action: string, error: unknown, secrets: Secret[]): MigrateError {
  return new MigrateError(
    `Unexpected failure calling ${action}: ${redact(error instanceof Error ? error.name : String(error), secrets)}`,
    {
      exitCode: EXIT_CODES.unexpected,
      suggestion: 'This is a bug in ckan-migrate; please report it with the command you ran.',
    },
  )
}

/** Retry-After (seconds or an HTTP date) in ms, for the limiter; undefined when absent or unreadable. */
function retryAfterMs(value: string | undefined): number | undefined {
  const text = value?.trim()
  if (!text) return undefined
  const ms = /^\d+$/.test(text) ? Number(text) * 1000 : Date.parse(text) - Date.now()
  return Number.isFinite(ms) ? Math.max(0, ms) : undefined
}

/** Why an attempt was stopped by its own signal: the call's deadline, or the command's interrupt. */
class AttemptStopped extends Error {
  readonly why: 'deadline' | 'interrupt'

  constructor(why: 'deadline' | 'interrupt') {
    super(why)
    this.why = why
  }
}

/**
 * The command's interrupt, as the client sees it: when it fired, and who waits for it. One per
 * client and its withCredential copies (one listener on the signal, however many copies).
 */
class InterruptWatch {
  at: number | undefined
  readonly #waiting = new Set<() => void>()

  constructor(signal: AbortSignal | undefined) {
    if (signal?.aborted) this.at = Date.now()
    signal?.addEventListener(
      'abort',
      () => {
        this.at = Date.now()
        for (const wake of [...this.#waiting]) wake()
      },
      {once: true},
    )
  }

  /** Milliseconds an attempt may still run: Infinity before an interrupt. */
  graceLeft(graceMs: number): number {
    return this.at === undefined ? Number.POSITIVE_INFINITY : this.at + graceMs - Date.now()
  }

  /** Calls `wake` on the interrupt; returns the function that stops it. */
  onInterrupt(wake: () => void): () => void {
    this.#waiting.add(wake)
    return () => this.#waiting.delete(wake)
  }

  /** Waits `ms`; false when the interrupt came first (at once if it already had). */
  async sleep(ms: number): Promise<boolean> {
    if (this.at !== undefined) return false
    return new Promise((resolve) => {
      const off = this.onInterrupt(() => {
        clearTimeout(timer)
        off()
        resolve(false)
      })
      const timer = setTimeout(() => {
        off()
        resolve(true)
      }, ms)
    })
  }
}

/**
 * When one attempt must have its answer: a 'safe' call's attempt gets at most half of --timeout
 * (a stalled attempt leaves time for a retry), a write's the rest of the call (a write that timed
 * out is never sent again, so it may as well wait). Never past the call's deadline.
 */
function attemptDeadline(policy: RetryPolicy, replay: Replay, deadline: number): number {
  if (replay === 'before-send') return deadline
  return Math.min(deadline, Date.now() + policy.callTimeoutMs / 2)
}

/**
 * The signal of one attempt: it fires at the call's deadline or, after an interrupt, at the end
 * of the grace, whichever comes first. `done()` once the attempt is over.
 */
function attemptLimit(
  deadline: number,
  interrupt: InterruptWatch,
  graceMs: number,
): {done: () => void; signal: AbortSignal} {
  const controller = new AbortController()
  let timer: NodeJS.Timeout | undefined
  const arm = () => {
    clearTimeout(timer)
    const graceEnd = interrupt.at === undefined ? Number.POSITIVE_INFINITY : interrupt.at + graceMs
    const why = graceEnd < deadline ? 'interrupt' : 'deadline'
    timer = setTimeout(
      () => controller.abort(new AttemptStopped(why)),
      Math.max(0, Math.min(deadline, graceEnd) - Date.now()),
    )
  }
  arm()
  const off = interrupt.onInterrupt(arm)
  return {
    done() {
      clearTimeout(timer)
      off()
    },
    signal: controller.signal,
  }
}

/** How an attempt failed without an answer, for the limiter: a timeout is a sign of overload. */
function attemptFailure(error: unknown): AttemptStatus {
  if (error instanceof AttemptStopped) return error.why === 'deadline' ? 'timeout' : 'network'
  const code = causeCode(error)
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT' || code === 'UND_ERR_CONNECT_TIMEOUT')
    return 'timeout'
  return 'network'
}

/** An error answer's body: parsed when its type is JSON (and it parses), the text otherwise. */
function errorData(text: string, contentType: string): unknown {
  if (!text) return undefined
  if (!/\bjson\b|\+json/i.test(contentType)) return text
  try {
    return JSON.parse(text) as unknown
  } catch {
    return text
  }
}

function createAgent(caCertPath: string | undefined): Agent {
  if (!caCertPath) return new Agent({keepAliveTimeout: 10_000})
  let ca: string
  try {
    ca = readInputTextSync(caCertPath, {maxBytes: SMALL_FILE_LIMIT})
  } catch (error) {
    throw new MigrateError(`Cannot read --ca-cert ${caCertPath}: it ${readFailure(error)}`, {
      exitCode: EXIT_CODES.badInput,
      suggestion: 'Pass a readable PEM file with the CA certificate(s) of the site.',
    })
  }
  if (!ca.includes('-----BEGIN CERTIFICATE-----')) {
    throw new MigrateError(`--ca-cert ${caCertPath} holds no PEM certificate`, {
      exitCode: EXIT_CODES.badInput,
      suggestion: 'Pass the CA certificate in PEM form (-----BEGIN CERTIFICATE-----).',
    })
  }
  return new Agent({connect: {ca}, keepAliveTimeout: 10_000})
}

/** The first `code` along an error's cause chain (undici hides the system error in `cause`). */
function causeCode(error: unknown): string | undefined {
  let current: unknown = error
  for (let depth = 0; depth < 6 && current; depth += 1) {
    const {code} = current as {code?: unknown}
    if (typeof code === 'string') return code
    const {errors} = current as {errors?: unknown}
    if (Array.isArray(errors) && errors.length > 0) {
      const inner = causeCode(errors[0])
      if (inner) return inner
    }
    current = (current as {cause?: unknown}).cause
  }
  return undefined
}

/** The innermost message (e.g. "bad port", "other side closed"), for errors without a code. */
function causeMessage(error: unknown): string | undefined {
  let current: unknown = error
  let message: string | undefined
  for (let depth = 0; depth < 6 && current instanceof Error; depth += 1) {
    message = current.message
    current = current.cause
  }
  return message?.split('\n')[0]
}

/**
 * --ckan-url must be a plain http(s) base URL. A user name or password in it is refused without
 * echoing the URL; the API credential has its
 * own file.
 */
function assertUsableCkanUrl(url: URL): void {
  if (url.username || url.password) {
    throw new MigrateError('The CKAN URL holds a user name or password', {
      exitCode: EXIT_CODES.badInput,
      suggestion:
        'Pass --ckan-url without credentials (https://HOST/PATH); the sysadmin credential goes in --api-key-file.',
    })
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new MigrateError(`The CKAN URL scheme ${url.protocol.replace(/:$/, '')}:// is not HTTP`, {
      exitCode: EXIT_CODES.badInput,
      suggestion: "Pass the site's base URL, https://HOST or https://HOST/PATH.",
    })
  }
}

/** Removes any secret value (credential, jti) from text CKAN or a proxy sent back. */
function redact(text: string, secrets: Secret[]): string {
  let result = text
  for (const secret of secrets) {
    const value = secret.reveal()
    if (value.length >= 4) result = result.split(value).join('[redacted]')
  }
  return result
}
