import {readFileSync} from 'node:fs'
import ky, {isHTTPError, isNetworkError, isTimeoutError, type KyInstance, type RetryOptions} from 'ky'
import {Agent, request as undiciRequest, fetch as undiciFetch} from 'undici'

import {EXIT_CODES, MigrateError} from '../errors.js'
import {Secret} from '../secret.js'
import {
  CkanApiError,
  CkanTlsError,
  CkanUnreachableError,
  describeCkanError,
  OutcomeUnknownError,
} from './ckan-api-errors.js'
import type {AttemptStatus, RequestObserver} from './adaptive-limit.js'
import {decodeJwtPayload} from './jwt.js'

export {CkanApiError, CkanTlsError, CkanUnreachableError, OutcomeUnknownError} from './ckan-api-errors.js'

export type CkanApiClientOptions = {
  /** PEM file with the CA certificate(s) to trust (private CAs). TLS is always verified. */
  caCertPath?: string
  /** Base URL of the site, e.g. https://data.example.org (a path prefix such as /ckan is kept). */
  ckanUrl: URL
  /** A sysadmin's token or (2.9) legacy key. Absent: anonymous calls only. */
  credential?: Secret
  /** Test seam; by default undici's fetch with a keep-alive Agent (and the CA of caCertPath). */
  fetch?: typeof fetch
  /** Told about every HTTP attempt (retries included): the run's concurrency limiter. */
  observer?: RequestObserver
  /** The header carrying the credential, raw (never "Bearer "): CKAN's apitoken_header_name. */
  headerName?: string
  /** Retries of calls that are safe to replay (reads, revoke); default 4. */
  retryLimit?: number
  /** Milliseconds to wait for one answer; default 30 000. */
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

/**
 * How a call may be repeated after a failure:
 * - 'safe': reads and idempotent writes (revoke); retried on 408/429/5xx, timeouts, resets.
 * - 'before-send': a non-idempotent write (api_token_create); retried only when CKAN surely did
 *   nothing (429, connection refused). Any other failure after sending is an OutcomeUnknownError.
 */
export type Replay = 'before-send' | 'safe'

export type CallActionOptions = {
  /** Send no credential (status_show). */
  anonymous?: boolean
  method?: 'GET' | 'POST'
  replay?: Replay
}

type ActionEnvelope<T> = {result: T; success: boolean}

const TLS_CODE = /^(CERT_|ERR_TLS_|ERR_SSL_|SELF_SIGNED_|DEPTH_ZERO_|UNABLE_TO_|EPROTO$|HOSTNAME_MISMATCH)/
/** Failures where the request surely never reached CKAN. */
const NOT_SENT_CODES = new Set([
  'EAI_AGAIN',
  'ECONNREFUSED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'UND_ERR_CONNECT_TIMEOUT',
])
const DNS_CODES = new Set(['EAI_AGAIN', 'ENOTFOUND'])

/**
 * CKAN's action API (`/api/3/action/<name>`), for CKAN 2.9 to 2.11. The credential is sent raw
 * in one header (Authorization by default), never together with another one, so a token is
 * tested alone. Every error is translated at this edge (ckan-api-errors.ts).
 */
export class CkanApiClient {
  readonly ckanUrl: URL
  /** Base of every action URL, ending in `/api/3/action/`. */
  readonly #actionBase: string
  readonly #agent: Agent | undefined
  readonly #credential: Secret | undefined
  readonly #headerName: string
  readonly #http: KyInstance
  readonly #options: CkanApiClientOptions

  constructor(options: CkanApiClientOptions, shared?: {agent: Agent | undefined}) {
    assertUsableCkanUrl(options.ckanUrl)
    this.#options = options
    this.ckanUrl = options.ckanUrl
    this.#credential = options.credential
    this.#headerName = options.headerName ?? 'Authorization'
    this.#agent = shared ? shared.agent : options.fetch ? undefined : createAgent(options.caCertPath)
    const agent = this.#agent
    const transport: typeof fetch =
      options.fetch ??
      (async (input, init) => {
        const request = input instanceof Request ? input : new Request(input, init)
        const body = request.method === 'GET' || request.method === 'HEAD' ? undefined : await request.arrayBuffer()
        const response = await undiciFetch(request.url, {
          body,
          dispatcher: agent,
          headers: [...request.headers],
          method: request.method,
          signal: request.signal,
        })
        return response as unknown as Response
      })
    const {observer} = options
    // Every attempt ky makes (its retries included) goes through here: the limiter sees each one.
    const fetchImpl: typeof fetch = observer
      ? async (input, init) => {
          const url = input instanceof Request ? input.url : String(input)
          const end = observer.begin(new URL(url).pathname.split('/').pop() ?? '')
          try {
            const response = await transport(input, init)
            end({retryAfterMs: retryAfterMs(response.headers.get('retry-after') ?? undefined), status: response.status})
            return response
          } catch (error) {
            end({status: attemptFailure(error)})
            throw error
          }
        }
      : transport
    const base = options.ckanUrl.href.endsWith('/') ? options.ckanUrl.href : `${options.ckanUrl.href}/`
    this.#actionBase = new URL('api/3/action/', base).href
    this.#http = ky.create({
      baseUrl: this.#actionBase,
      fetch: fetchImpl,
      retry: 0,
      timeout: options.timeoutMs ?? 30_000,
    })
  }

  /**
   * Calls any action. Params may hold Secrets: they are revealed only into the request body and
   * redacted from anything CKAN echoes back.
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
    const headers: Record<string, string> = {}
    if (this.#credential && !options.anonymous) headers[this.#headerName] = this.#credential.reveal()
    const retry = this.#retryOptions(replay)
    let response: ActionEnvelope<T>
    try {
      response =
        method === 'GET'
          ? await this.#http
              .get(action, {headers, retry, searchParams: plain as Record<string, string>})
              .json<ActionEnvelope<T>>()
          : await this.#http.post(action, {headers, json: plain, retry}).json<ActionEnvelope<T>>()
    } catch (error) {
      throw this.#translate(action, error, replay, secrets)
    }
    if (!response || typeof response !== 'object' || response.success !== true) {
      const message = describeCkanError(response, (text) => redact(text, secrets)) ?? 'not a CKAN action API answer'
      throw new CkanApiError(action, 200, message)
    }
    return response.result
  }

  /** Closes idle keep-alive connections (call when done, so the process can exit promptly). */
  async close(): Promise<void> {
    await this.#agent?.close()
  }

  /**
   * api_token_create for `user`. Returns the JWT and its jti (decoded from the payload: CKAN does
   * not return it). Never replayed after it may have reached CKAN: an OutcomeUnknownError then.
   */
  async createApiToken(options: CreateApiTokenOptions): Promise<CreatedApiToken> {
    const params: Record<string, unknown> = {name: options.name, user: options.user}
    if (options.expiresIn !== undefined) params.expires_in = options.expiresIn
    if (options.unit !== undefined) params.unit = options.unit
    // The hot path of issue-tokens: undici's request() directly (no Request/Response objects,
    // no web streams); the fetch test seam keeps going through callAction.
    const result = this.#agent
      ? await this.#postBeforeSend<{token?: unknown}>('api_token_create', JSON.stringify(params))
      : await this.callAction<{token?: unknown}>('api_token_create', params, {replay: 'before-send'})
    if (typeof result?.token !== 'string') {
      throw new OutcomeUnknownError('api_token_create', 'CKAN answered without a token')
    }
    const token = new Secret(result.token)
    const payload = decodeJwtPayload(token)
    if (!payload) {
      throw new MigrateError('CKAN returned a token that is not a JWT with a jti', {
        exitCode: EXIT_CODES.ckanRejected,
        suggestion:
          'A plugin changes how tokens are encoded (IApiToken); ckan-migrate needs CKAN’s default JWT tokens.',
      })
    }
    return {
      expiresAt: payload.exp === undefined ? null : new Date(payload.exp * 1000).toISOString(),
      issuedAt: Number.isFinite(payload.iat) ? new Date(payload.iat * 1000).toISOString() : null,
      jti: new Secret(payload.jti),
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
  async listApiTokens(user: string): Promise<ApiTokenSummary[]> {
    const rows = await this.callAction<Array<Record<string, unknown>>>(
      'api_token_list',
      {user, user_id: user},
      {method: 'GET'},
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
  async revokeApiToken(jti: Secret): Promise<void> {
    await this.callAction<null>('api_token_revoke', {jti}, {replay: 'safe'})
  }

  /** status_show, anonymously: version, plugins, site URL. Proves the action API answers. */
  async statusShow(): Promise<CkanStatus> {
    const result = await this.callAction<Record<string, unknown>>('status_show', {}, {anonymous: true, method: 'GET'})
    if (typeof result?.ckan_version !== 'string') {
      throw new CkanUnreachableError(
        'status_show',
        'the answer has no ckan_version',
        'Check --ckan-url: it must be the CKAN site’s base URL.',
      )
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
    return new CkanApiClient({...this.#options, credential}, {agent: this.#agent})
  }

  /**
   * POSTs a write that must never be replayed once it may have reached CKAN, with undici's
   * request() on the client's agent: the same rules as callAction with replay 'before-send' (ky):
   * retried only after a 429 (honouring Retry-After) or a refused connection, with jittered
   * backoff; a timeout, a reset after sending, a 5xx or a 2xx that is not JSON is an
   * OutcomeUnknownError; every error translated by the same code as callAction's.
   */
  async #postBeforeSend<T>(action: string, body: string): Promise<T> {
    const secrets: Secret[] = this.#credential ? [this.#credential] : []
    const headers: Record<string, string> = {accept: 'application/json', 'content-type': 'application/json'}
    if (this.#credential) headers[this.#headerName.toLowerCase()] = this.#credential.reveal()
    const timeoutMs = this.#options.timeoutMs ?? 30_000
    const limit = this.#options.retryLimit ?? 4
    const url = this.#actionBase + action
    for (let retries = 0; ; retries += 1) {
      let status: number
      let text: string
      let retryAfter: string | string[] | undefined
      const end = this.#options.observer?.begin(action)
      try {
        const response = await undiciRequest(url, {
          body,
          bodyTimeout: timeoutMs,
          dispatcher: this.#agent,
          headers,
          headersTimeout: timeoutMs,
          method: 'POST',
        }).catch((error: unknown) => {
          end?.({status: attemptFailure(error)})
          throw error
        })
        status = response.statusCode
        retryAfter = response.headers['retry-after']
        end?.({retryAfterMs: retryAfterMs(retryAfter), status})
        text = await response.body.text()
        if (status >= 200 && status < 300) {
          let envelope: ActionEnvelope<T>
          try {
            envelope = JSON.parse(text) as ActionEnvelope<T>
          } catch {
            throw new OutcomeUnknownError(action, 'the answer was not JSON')
          }
          if (!envelope || typeof envelope !== 'object' || envelope.success !== true) {
            throw new CkanApiError(
              action,
              200,
              describeCkanError(envelope, (text) => redact(text, secrets)) ?? 'not a CKAN action API answer',
            )
          }
          return envelope.result
        }
        if (status === 429 && retries < limit) {
          await sleep(retryAfterMs(retryAfter) ?? backoffMs(retries + 1))
          continue
        }
        const type = String(response.headers['content-type'] ?? '')
        throw this.#translateStatus(action, status, errorData(text, type), 'before-send', secrets)
      } catch (error) {
        if (error instanceof MigrateError) throw error
        const code = causeCode(error)
        if (code?.startsWith('UND_ERR_INVALID')) throw unexpected(action, error, secrets)
        if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT')
          throw this.#timedOut(action, 'before-send')
        // Refused before sending: CKAN saw nothing, so trying again cannot make a second token.
        if ((code === 'ECONNREFUSED' || code === 'UND_ERR_CONNECT_TIMEOUT') && retries < limit) {
          await sleep(backoffMs(retries + 1))
          continue
        }
        throw this.#translateNetwork(action, error, 'before-send', secrets)
      }
    }
  }

  #retryOptions(replay: Replay): RetryOptions {
    const limit = this.#options.retryLimit ?? 4
    if (replay === 'safe') {
      return {
        afterStatusCodes: [413, 429, 503],
        backoffLimit: 10_000,
        jitter: true,
        limit,
        maxRetryAfter: 120_000,
        methods: ['get', 'post'],
        retryOnTimeout: true,
        shouldRetry({error}) {
          const code = causeCode(error)
          if (code && (TLS_CODE.test(code) || DNS_CODES.has(code))) return false
          return undefined
        },
        statusCodes: [408, 429, 500, 502, 503, 504],
      }
    }
    return {
      afterStatusCodes: [429],
      backoffLimit: 10_000,
      jitter: true,
      limit,
      maxRetryAfter: 120_000,
      methods: ['post'],
      retryOnTimeout: false,
      shouldRetry({error}) {
        // 429: the default check, which honours Retry-After (a `true` here would skip it).
        if (isHTTPError(error)) return error.response.status === 429 ? undefined : false
        if (isTimeoutError(error)) return false
        const code = causeCode(error)
        // Refused before sending: CKAN saw nothing, so trying again cannot make a second token.
        return code === 'ECONNREFUSED' || code === 'UND_ERR_CONNECT_TIMEOUT'
      },
      statusCodes: [429],
    }
  }

  #translate(action: string, error: unknown, replay: Replay, secrets: Secret[]): Error {
    if (isHTTPError(error)) return this.#translateStatus(action, error.response.status, error.data, replay, secrets)
    if (isTimeoutError(error)) return this.#timedOut(action, replay)
    if (isNetworkError(error) || error instanceof TypeError)
      return this.#translateNetwork(action, error, replay, secrets)
    if (error instanceof MigrateError) return error
    if (error instanceof SyntaxError) {
      // 2xx with a body that is not JSON: a login page, a proxy, a wrong URL.
      if (replay === 'before-send') return new OutcomeUnknownError(action, 'the answer was not JSON')
      return new CkanUnreachableError(
        action,
        'the answer is not JSON',
        'Check --ckan-url: it must be the CKAN site’s base URL.',
      )
    }
    return unexpected(action, error, secrets)
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
    if ((code && NOT_SENT_CODES.has(code)) || detail === 'bad port') {
      return new CkanUnreachableError(action, `${code ?? detail} at ${this.ckanUrl.host}`)
    }
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
      return new CkanUnreachableError(
        action,
        `HTTP ${status} from ${this.ckanUrl.host} is not a CKAN action API answer`,
        'Check --ckan-url: it must be the CKAN site’s base URL (with its path prefix, if any).',
      )
    }
    return new CkanApiError(action, status, redact(described, secrets))
  }

  #timedOut(action: string, replay: Replay): Error {
    const timeoutMs = this.#options.timeoutMs ?? 30_000
    const seconds = timeoutMs % 1000 === 0 ? `${timeoutMs / 1000} s` : `${timeoutMs} ms`
    if (replay === 'before-send') return new OutcomeUnknownError(action, `no answer within ${seconds}`)
    return new CkanUnreachableError(
      action,
      `no answer within ${seconds}`,
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

/** ky's backoff for retry number `attempt` (1, 2, …): 0.3 s doubling, jittered, at most 10 s. */
function backoffMs(attempt: number): number {
  return Math.min(10_000, Math.random() * 0.3 * 2 ** (attempt - 1) * 1000)
}

/** Retry-After (seconds or an HTTP date) in ms, at most 120 s; undefined when absent or unreadable. */
function retryAfterMs(header: string | string[] | undefined): number | undefined {
  const value = (Array.isArray(header) ? header[0] : header)?.trim()
  if (!value) return undefined
  const ms = /^\d+$/.test(value) ? Number(value) * 1000 : Date.parse(value) - Date.now()
  return Number.isFinite(ms) ? Math.min(120_000, Math.max(0, ms)) : undefined
}

/** How an attempt failed without an answer, for the limiter: a timeout is a sign of overload. */
function attemptFailure(error: unknown): AttemptStatus {
  const code = causeCode(error)
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT' || code === 'UND_ERR_CONNECT_TIMEOUT')
    return 'timeout'
  const name = error instanceof Error ? error.name : ''
  return name === 'TimeoutError' || name === 'AbortError' ? 'timeout' : 'network'
}

/** An error answer's body as ky hands it over: parsed when JSON, the text otherwise. */
function errorData(text: string, contentType: string): unknown {
  if (!text) return undefined
  if (!/\bjson\b|\+json/i.test(contentType)) return text
  try {
    return JSON.parse(text) as unknown
  } catch {
    return text
  }
}

async function sleep(ms: number): Promise<void> {
  await new Promise((resolve) => {
    setTimeout(resolve, ms)
  })
}

function createAgent(caCertPath: string | undefined): Agent {
  if (!caCertPath) return new Agent({keepAliveTimeout: 10_000})
  let ca: string
  try {
    ca = readFileSync(caCertPath, 'utf8')
  } catch (error) {
    throw new MigrateError(
      `Cannot read --ca-cert ${caCertPath}: ${(error as NodeJS.ErrnoException).code ?? 'unreadable'}`,
      {
        exitCode: EXIT_CODES.badInput,
        suggestion: 'Pass a readable PEM file with the CA certificate(s) of the site.',
      },
    )
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

/** Removes any secret value (credential, jti) from text CKAN or a proxy sent back. */
/**
 * --ckan-url must be a plain http(s) base URL. A user name or password in it is refused without
 * echoing the URL (fetch would refuse it anyway, quoting it whole); the API credential has its
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

function redact(text: string, secrets: Secret[]): string {
  let result = text
  for (const secret of secrets) {
    const value = secret.reveal()
    if (value.length >= 4) result = result.split(value).join('[redacted]')
  }
  return result
}
