import {createServer, type IncomingMessage, type Server, type ServerResponse} from 'node:http'
import type {Socket} from 'node:net'
import {setTimeout as sleep} from 'node:timers/promises'

import pg from 'pg'

import {EXIT_CODES, MigrateError} from '../lib/errors.js'
import type {CkanVersion} from '../lib/site/ckan-version.js'
import {ACTIONS, ActionError, type Caller, decodeToken} from './emulator-actions.js'
import {type EmulatorConfig, loadEmulatorConfig} from './emulator-config.js'
import {pythonJson, pythonRepr, utcNowTimestamp} from './emulator-json.js'
import {FaultPlan, type FaultKind, type FaultSettings} from './faults.js'

/**
 * Indexes the emulator's per-request lookups need and CKAN's schema lacks: 2.9 identifies every
 * request by `"user".apikey` first (CKAN has no index on it: each request scans the whole table),
 * and api_token_list reads a user's tokens by `api_token.user_id` (no index either). Without them
 * each request costs time in proportion to the site's size, so a rehearsal that calls once per
 * user grows with the square of the users (on PGlite, one WASM session, about 40 ms a request at
 * 100,000 users). The sandbox creates them on its own database only (never on a real site); they
 * change no answer, only how fast it comes. docs/emulator.md, "Performance".
 */
export const EMULATOR_INDEXES_SQL = [
  'CREATE INDEX IF NOT EXISTS ckan_migrate_sandbox_user_apikey ON "user" (apikey)',
  'CREATE INDEX IF NOT EXISTS ckan_migrate_sandbox_api_token_user_id ON api_token (user_id)',
] as const

/** True when the naive timestamp `earlier` is more than `seconds` before `later`. */
function isOlderThan(earlier: string, later: string, seconds: number): boolean {
  return Date.parse(`${later.replace(' ', 'T')}Z`) - Date.parse(`${earlier.replace(' ', 'T')}Z`) > seconds * 1000
}

export type CkanEmulatorOptions = {
  /** The site's ckan.ini; without it, requests get 503 until `loadConfig()` is called. */
  ckanIni?: string
  /** postgresql:// URL of the site's database (a real server or PGlite's socket). */
  databaseUrl: string
  /** Environment CKAN would run with (env overrides, ckanext-envvars). Default process.env. */
  env?: NodeJS.ProcessEnv
  faults?: FaultSettings
  /** pg.Pool size (default 16; keep it small on PGlite, which is one session). */
  poolSize?: number
  /** Port on 127.0.0.1; 0 (default) picks a free one. */
  port?: number
  version: CkanVersion
}

export type EmulatorStats = {
  /** Requests per action name (unknown names included). */
  actions: Record<string, number>
  /** The capacity model (`workers`): the most served at once, the longest backlog, requests refused past it. */
  capacity: {maxBacklog: number; maxInService: number; refused: number}
  faults: Record<FaultKind, number>
  requests: number
}

export type CkanEmulator = {
  readonly ckanIni: string | undefined
  /** Re-reads the ckan.ini (e.g. after a config rewrite), as a CKAN restart would. */
  loadConfig(ckanIni?: string): Promise<void>
  readonly port: number
  /** Changes the fault settings from the next request on (a new PRNG from their seed). */
  setFaults(settings: FaultSettings): void
  /** Switches to another CKAN version over the same database and ini (reloads the ini). */
  setVersion(version: CkanVersion): Promise<void>
  stats(): EmulatorStats
  stop(): Promise<void>
  /** http://127.0.0.1:<port> */
  readonly url: string
  readonly version: CkanVersion
}

const STATUS_TEXT: Record<number, string> = {
  200: 'OK',
  400: 'BAD REQUEST',
  403: 'FORBIDDEN',
  404: 'NOT FOUND',
  405: 'METHOD NOT ALLOWED',
  409: 'CONFLICT',
  429: 'TOO MANY REQUESTS',
  500: 'INTERNAL SERVER ERROR',
  502: 'Bad Gateway',
  503: 'SERVICE UNAVAILABLE',
}
const JSON_TYPE = 'application/json;charset=utf-8'
const ACTION_PATH = /^\/api\/(?:3\/)?action\/([^/]+)\/?$/
const MAX_BODY = 1024 * 1024
const HTML_TYPE = 'text/html; charset=utf-8'

/**
 * The action name as werkzeug decodes the path: valid %XX escapes become bytes, invalid ones stay
 * as written, and bytes that are not UTF-8 become U+FFFD.
 */
function unquotePath(segment: string): string {
  const bytes: number[] = []
  for (let index = 0; index < segment.length; index++) {
    const escape = segment.slice(index + 1, index + 3)
    if (segment[index] === '%' && /^[0-9A-Fa-f]{2}$/.test(escape)) {
      bytes.push(Number.parseInt(escape, 16))
      index += 2
    } else bytes.push(...Buffer.from(segment[index]!, 'utf8'))
  }
  return new TextDecoder('utf-8').decode(Buffer.from(bytes))
}

/** Timestamps stay text ('2026-11-22 03:56:49.625661'): CKAN's are naive and printed as written. */
const TYPES = {
  getTypeParser: ((oid: number, format?: string) =>
    oid === 1114
      ? (value: string) => value
      : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
}

/**
 * Starts the CKAN action-API emulator: the actions a migration touches, answered as real CKAN
 * 2.9.11, 2.10.10 or 2.11.5 answer them (see docs/emulator.md), over the site's own database.
 */
export async function startCkanEmulator(options: CkanEmulatorOptions): Promise<CkanEmulator> {
  // One connection (PGlite's one shared session) is never closed when idle: pg.Pool's default 10 s
  // idle timeout would reconnect into the same session, where our named prepared statements
  // still exist ("prepared statement … already exists" on every request after a pause).
  const pool = new pg.Pool({
    connectionString: options.databaseUrl,
    max: options.poolSize ?? 16,
    types: TYPES,
    ...(options.poolSize === 1 ? {idleTimeoutMillis: 0} : {}),
  })
  pool.on('error', () => {
    // An idle client lost its connection (database stopped); the next query reconnects or fails.
  })
  const env = options.env ?? process.env
  let version = options.version
  let ckanIni = options.ckanIni
  let config: EmulatorConfig | undefined
  let plan = new FaultPlan(options.faults)
  const stats: EmulatorStats = {
    actions: {},
    capacity: {maxBacklog: 0, maxInService: 0, refused: 0},
    faults: {
      'hang-after-commit': 0,
      'reset-after-write': 0,
      'reset-before-write': 0,
      'status-429': 0,
      'status-500': 0,
      'status-502': 0,
      'status-503': 0,
    },
    requests: 0,
  }
  const sockets = new Set<Socket>()
  const hanging = new Set<ServerResponse>()

  // The capacity model: a request holds one of `workers` from its arrival to its answer (a
  // gunicorn/uWSGI sync worker); the others wait in a bounded backlog, first come first served.
  let inService = 0
  const backlog: Array<() => void> = []

  /** A worker for one request: true when it has one, false when the backlog is full (refused). */
  async function takeWorker(): Promise<boolean> {
    const workers = plan.settings.workers ?? Number.POSITIVE_INFINITY
    if (inService < workers && backlog.length === 0) {
      inService += 1
      stats.capacity.maxInService = Math.max(stats.capacity.maxInService, inService)
      return true
    }
    if (backlog.length >= plan.backlog) {
      stats.capacity.refused += 1
      return false
    }
    await new Promise<void>((resolve) => {
      backlog.push(resolve)
      stats.capacity.maxBacklog = Math.max(stats.capacity.maxBacklog, backlog.length)
    })
    return true
  }

  function releaseWorker(): void {
    inService -= 1
    const workers = plan.settings.workers ?? Number.POSITIVE_INFINITY
    while (backlog.length > 0 && inService < workers) {
      inService += 1
      stats.capacity.maxInService = Math.max(stats.capacity.maxInService, inService)
      backlog.shift()!()
    }
  }

  async function serve(request: IncomingMessage, response: ServerResponse): Promise<void> {
    if (!(await takeWorker())) {
      // nginx in front of a full listen queue: its own error page, nothing reached CKAN.
      const status = plan.settings.overflowStatus ?? 502
      return send(
        response,
        status,
        status === 503
          ? '<html><head><title>503 Service Temporarily Unavailable</title></head><body><center><h1>503 Service Temporarily Unavailable</h1></center></body></html>'
          : '<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>',
        'text/html',
      )
    }
    try {
      await handle(request, response)
    } finally {
      releaseWorker()
    }
  }

  async function loadConfig(path?: string): Promise<void> {
    if (path) ckanIni = path
    if (!ckanIni) throw new MigrateError('The emulator has no ckan.ini to load', {exitCode: EXIT_CODES.badInput})
    config = await loadEmulatorConfig(ckanIni, version, env)
  }

  function send(
    response: ServerResponse,
    status: number,
    body: string,
    contentType = JSON_TYPE,
    headers: Record<string, string> = {},
  ): void {
    response.writeHead(status, STATUS_TEXT[status] ?? '', {
      'Content-Length': Buffer.byteLength(body),
      'Content-Type': contentType,
      ...headers,
    })
    response.end(body)
  }

  async function identify(request: IncomingMessage, current: EmulatorConfig): Promise<Caller | undefined> {
    let value = ''
    for (const header of current.headers) {
      const given = request.headers[header]
      value = (Array.isArray(given) ? given[0] : given) ?? ''
      if (value !== '') break
    }
    if (value === '') return undefined
    if (version === '2.9') {
      // CKAN 2.9 looks the value up as a legacy key first, and decodes it as a token only when no
      // user holds it. A value that decodes is looked up and touched in one statement (the touch
      // only when no user holds it as a key): one round trip instead of two. A value that does
      // not decode (or makes decoding throw) takes the key lookup alone, then decodes as CKAN does.
      let decoded: ReturnType<typeof decodeToken>
      try {
        decoded = decodeToken(current, version, value)
      } catch {
        decoded = undefined
      }
      if (decoded) {
        const owner = await touchToken(decoded.jti, utcNowTimestamp().text, value)
        return owner && {id: owner.id, name: owner.name, state: owner.state, sysadmin: owner.sysadmin}
      }
      const byKey = await pool.query<Caller>({
        name: 'emulator-identify-key',
        text: 'SELECT id, name, sysadmin, state FROM "user" WHERE apikey = $1 LIMIT 1',
        values: [value],
      })
      if (byKey.rows[0]) return byKey.rows[0]
    }
    const payload = decodeToken(current, version, value)
    if (!payload) return undefined
    const now = utcNowTimestamp().text
    // ApiToken.touch(): last_access on every authenticated request, committed before the action runs.
    const row = await touchToken(payload.jti, now)
    if (!row) return undefined
    const caller: Caller = {id: row.id, name: row.name, state: row.state, sysadmin: row.sysadmin}
    if (version === '2.9') return caller
    // 2.10+: g.user is set, flask-login then logs out a user whose state is not 'active', and
    // set_user_last_active still runs for the user that was identified.
    if (
      row.last_active === null ||
      row.last_active === undefined ||
      isOlderThan(row.last_active, now, current.lastActiveInterval)
    ) {
      await pool.query({
        name: 'emulator-last-active',
        text: `UPDATE "user" SET last_active = $2::timestamp WHERE id = $1
               AND (last_active IS NULL OR last_active < $2::timestamp - make_interval(secs => $3))`,
        values: [caller.id, now, current.lastActiveInterval],
      })
    }
    return caller.state === 'active' ? caller : undefined
  }

  type TokenOwner = Caller & {last_active?: null | string}
  type QueuedTouch = {
    promise: Promise<TokenOwner | undefined>
    reject(error: unknown): void
    resolve(owner: TokenOwner | undefined): void
    timestamp: string
  }

  // Requests with the same token share their UPDATE: at most one in flight per jti; requests that
  // arrive meanwhile wait for the next one, which carries the newest time and tells them (after
  // their arrival, so a revocation in between is seen) whether the token still exists and whose
  // it is. Every request still waits for a committed last_access at least as recent as its own,
  // as CKAN's touch-and-commit, without queueing on the row lock one by one.
  const touchesInFlight = new Set<string>()
  const touchesQueued = new Map<string, QueuedTouch>()

  /** `legacyKey` (2.9): the request's value, tried as a legacy key first in the same statement. */
  function touchToken(jti: string, timestamp: string, legacyKey?: string): Promise<TokenOwner | undefined> {
    const key = legacyKey === undefined ? `${version}:${jti}` : `${version}:${jti}:${legacyKey}`
    if (!touchesInFlight.has(key)) return runTouch(key, jti, timestamp, legacyKey)
    const queued = touchesQueued.get(key)
    if (queued) {
      if (timestamp > queued.timestamp) queued.timestamp = timestamp
      return queued.promise
    }
    const queuedTouch = {timestamp} as QueuedTouch
    queuedTouch.promise = new Promise<TokenOwner | undefined>((resolve, reject) =>
      Object.assign(queuedTouch, {reject, resolve}),
    )
    touchesQueued.set(key, queuedTouch)
    return queuedTouch.promise
  }

  function runTouch(key: string, jti: string, timestamp: string, legacyKey?: string): Promise<TokenOwner | undefined> {
    const modern = version !== '2.9'
    const query =
      legacyKey === undefined
        ? {
            name: `emulator-touch-token-${modern ? '210' : '29'}`,
            text: `WITH t AS (UPDATE api_token SET last_access = $2::timestamp WHERE id = $1 RETURNING user_id)
               SELECT u.id, u.name, u.sysadmin, u.state${modern ? ', u.last_active' : ''} FROM "user" u JOIN t ON u.id = t.user_id`,
            values: [jti, timestamp],
          }
        : {
            name: 'emulator-identify-key-or-token-29',
            text: `WITH k AS (SELECT id, name, sysadmin, state FROM "user" WHERE apikey = $3 LIMIT 1),
                    t AS (UPDATE api_token SET last_access = $2::timestamp
                          WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM k) RETURNING user_id)
               SELECT id, name, sysadmin, state FROM k
               UNION ALL SELECT u.id, u.name, u.sysadmin, u.state FROM "user" u JOIN t ON u.id = t.user_id`,
            values: [jti, timestamp, legacyKey],
          }
    const update = pool.query<TokenOwner>(query).then((result) => result.rows[0])
    touchesInFlight.add(key)
    const next = () => {
      touchesInFlight.delete(key)
      const queued = touchesQueued.get(key)
      if (!queued) return
      touchesQueued.delete(key)
      runTouch(key, jti, queued.timestamp, legacyKey).then(queued.resolve, queued.reject)
    }
    update.then(next, next)
    return update
  }

  async function readBody(request: IncomingMessage): Promise<Buffer> {
    const chunks: Buffer[] = []
    let size = 0
    for await (const chunk of request) {
      size += (chunk as Buffer).length
      if (size > MAX_BODY) throw new ActionError(413, {})
      chunks.push(chunk as Buffer)
    }
    return Buffer.concat(chunks)
  }

  /** views/api.py _get_request_data, including its error messages. */
  async function requestData(
    request: IncomingMessage,
    url: URL,
    body: Buffer,
    getable: boolean,
  ): Promise<Record<string, unknown>> {
    const fail = (message: string) => new ActionError(400, {bare: `Bad request - JSON Error: ${message}`})
    if (!getable && request.method === 'GET') throw fail('Invalid request. Please use POST method for your request')
    const mixed = (params: URLSearchParams) => {
      const out: Record<string, unknown> = {}
      for (const key of new Set(params.keys())) {
        const values = params.getAll(key)
        out[key] = values.length === 1 ? values[0] : values
      }
      return out
    }
    const contentType = (request.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase()
    let data: unknown = {}
    let form: undefined | URLSearchParams
    // request.files: each file field's first file (unicode_safe reads it as its file name).
    const files = new Map<string, string>()
    if (request.method === 'POST' && contentType === 'application/x-www-form-urlencoded')
      form = new URLSearchParams(body.toString('utf8'))
    else if (request.method === 'POST' && contentType === 'multipart/form-data') {
      form = new URLSearchParams()
      try {
        const parsed = await new Response(new Uint8Array(body), {
          headers: {'content-type': request.headers['content-type']!},
        }).formData()
        for (const [key, value] of parsed) {
          if (typeof value === 'string') form.append(key, value)
          else if (!files.has(key)) files.set(key, value.name)
        }
      } catch {
        // werkzeug parses a malformed multipart body silently, as no fields.
      }
    }
    if (form && [...form.keys()].length > 0) {
      const values = [...form.values()]
      if (values.length === 1 && (values[0] === '1' || values[0] === '')) {
        const key = [...form.keys()][0]!
        try {
          data = JSON.parse(key)
        } catch (error) {
          throw fail(
            `Error decoding JSON data. Error: JSONDecodeError(${pythonRepr((error as Error).message)}) JSON data extracted from the request: {}`,
          )
        }
      } else data = mixed(form)
    } else if (getable && [...url.searchParams.keys()].length > 0) {
      data = mixed(url.searchParams)
    } else if (body.length > 0 && contentType !== 'multipart/form-data') {
      if (contentType === 'application/json' || contentType.endsWith('+json')) {
        try {
          data = JSON.parse(body.toString('utf8'))
        } catch {
          throw fail(
            "Error decoding JSON data. Error: <BadRequest '400: Bad Request'> JSON data extracted from the request: {}",
          )
        }
      } else data = null
    }
    if (typeof data !== 'object' || data === null || Array.isArray(data))
      throw fail(`Request data JSON decoded to ${pythonRepr(data)} but it needs to be a dictionary.`)
    for (const [key, name] of files) (data as Record<string, unknown>)[key] = name
    return data as Record<string, unknown>
  }

  async function handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    stats.requests++
    const url = new URL(request.url ?? '/', 'http://127.0.0.1')
    const method = request.method ?? 'GET'
    const match = ACTION_PATH.exec(url.pathname)
    const root = url.pathname === '/api/3' || url.pathname === '/api/3/'
    // Flask routes /api/3 for GET and the actions for GET and POST (HEAD and OPTIONS added by Flask).
    const methods = match ? ['GET', 'HEAD', 'OPTIONS', 'POST'] : root ? ['GET', 'HEAD', 'OPTIONS'] : undefined
    if (!match || !methods!.includes(method) || method === 'OPTIONS') {
      // No action runs, but CKAN's before_request identifies the caller (touching the token) first.
      if (config) await identify(request, config)
      if (!methods) return send(response, 404, '<h1>Not Found</h1>', HTML_TYPE)
      if (!methods.includes(method)) return send(response, 405, '<h1>Method Not Allowed</h1>', HTML_TYPE)
      if (method === 'OPTIONS') return send(response, 200, '', HTML_TYPE, {Allow: methods.join(', ')})
      return send(response, 200, pythonJson({version: 3}))
    }
    const actionName = unquotePath(match[1]!)
    stats.actions[actionName] = (stats.actions[actionName] ?? 0) + 1
    const current = config
    if (!current)
      return send(response, 503, '<h1>Service Unavailable</h1><p>CKAN is starting.</p>', 'text/html; charset=utf-8')
    const help = `${current.siteUrl}/api/3/action/help_show?name=${actionName}`
    const envelope = (status: number, body: Record<string, unknown>) => send(response, status, pythonJson(body))

    const serviceMs = plan.serviceTime(actionName)
    if (serviceMs > 0) await sleep(serviceMs)
    const decision = plan.decide(actionName)
    if (decision.delayMs > 0) await sleep(decision.delayMs)
    const fault = decision.fault
    if (fault) stats.faults[fault]++
    switch (fault) {
      case 'reset-before-write': {
        request.socket.destroy()
        return
      }
      case 'status-429': {
        return send(response, 429, '<html><body><h1>429 Too Many Requests</h1></body></html>', 'text/html', {
          'Retry-After': String(plan.settings.retryAfterSeconds ?? 1),
        })
      }
      case 'status-500': {
        return envelope(500, {
          help,
          error: {__type: 'Internal Server Error', message: 'Internal Server Error'},
          success: false,
        })
      }
      case 'status-502': {
        return send(
          response,
          502,
          '<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>',
          'text/html',
        )
      }
      case 'status-503': {
        return send(
          response,
          503,
          '<html><head><title>503 Service Temporarily Unavailable</title></head><body><center><h1>503 Service Temporarily Unavailable</h1></center></body></html>',
          'text/html',
        )
      }
      default:
    }

    let body: Buffer
    try {
      body = await readBody(request)
    } catch {
      return send(response, 413, '<h1>Request Entity Too Large</h1>', 'text/html; charset=utf-8')
    }
    let status = 200
    let payload: Record<string, unknown> | string
    try {
      const caller = await identify(request, current)
      const action = ACTIONS[actionName]
      if (!action) throw new ActionError(400, {bare: `Bad request - Action name not known: ${actionName}`})
      const data = await requestData(request, url, body, action.getable)
      // A `callback` parameter (JSONP) is dropped and the request made anonymous.
      const anonymous = 'callback' in data
      delete data.callback
      const result = await action.run({caller: anonymous ? undefined : caller, config: current, data, pool, version})
      payload = {help, success: true, result}
    } catch (error) {
      if (error instanceof ActionError) {
        status = error.status
        payload = typeof error.body.bare === 'string' ? error.body.bare : {help, error: error.body, success: false}
      } else {
        // CKAN logs the traceback and answers a bare 500; CKAN_MIGRATE_EMULATOR_DEBUG=1 shows ours.
        if (process.env.CKAN_MIGRATE_EMULATOR_DEBUG) process.stderr.write(`emulator: ${actionName}: ${String(error)}\n`)
        status = 500
        payload = {help, error: {__type: 'Internal Server Error', message: 'Internal Server Error'}, success: false}
      }
    }
    if (fault === 'reset-after-write') {
      request.socket.destroy()
      return
    }
    if (fault === 'hang-after-commit') {
      hanging.add(response)
      return
    }
    send(response, status, pythonJson(payload))
  }

  const server: Server = createServer((request, response) => {
    serve(request, response).catch(() => {
      if (!response.headersSent)
        send(
          response,
          500,
          pythonJson({error: {__type: 'Internal Server Error', message: 'Internal Server Error'}, success: false}),
        )
    })
  })
  server.keepAliveTimeout = 30_000
  server.on('connection', (socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.port ?? 0, '127.0.0.1', () => {
      server.off('error', reject)
      resolve()
    })
  }).catch(async (error: NodeJS.ErrnoException) => {
    await pool.end()
    throw new MigrateError(
      error.code === 'EADDRINUSE'
        ? `Port ${options.port} on 127.0.0.1 is already in use`
        : `Cannot listen on 127.0.0.1:${options.port}: ${error.code ?? error.message}`,
      {cause: error, exitCode: EXIT_CODES.badInput, suggestion: 'Pick another --port, or 0 for any free port.'},
    )
  })
  const address = server.address()
  const port = typeof address === 'object' && address ? address.port : 0
  if (ckanIni) {
    try {
      await loadConfig()
    } catch (error) {
      await stopAll()
      throw error
    }
  }

  async function stopAll(): Promise<void> {
    for (const response of hanging) response.destroy()
    hanging.clear()
    for (const socket of sockets) socket.destroy()
    await new Promise<void>((resolve) => server.close(() => resolve()))
    await pool.end()
  }

  let stopped: Promise<void> | undefined
  return {
    get ckanIni() {
      return ckanIni
    },
    loadConfig,
    port,
    setFaults(settings: FaultSettings) {
      plan = new FaultPlan(settings)
    },
    async setVersion(next: CkanVersion) {
      const previous = version
      version = next
      if (ckanIni) {
        try {
          await loadConfig()
        } catch (error) {
          version = previous
          throw error
        }
      }
    },
    stats: () => structuredClone(stats),
    stop() {
      stopped ??= stopAll()
      return stopped
    },
    url: `http://127.0.0.1:${port}`,
    get version() {
      return version
    },
  }
}
