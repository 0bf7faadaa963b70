import {execFileSync} from 'node:child_process'
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {createServer, type IncomingMessage, type Server, type ServerResponse} from 'node:http'
import {createServer as createHttpsServer} from 'node:https'
import type {AddressInfo} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it, onTestFinished} from 'vitest'

import {AdaptiveLimiter} from '../../src/lib/site/adaptive-limit.js'
import {
  AttemptBudget,
  CkanApiClient,
  CkanApiError,
  CkanTlsError,
  CkanUnreachableError,
  OutcomeUnknownError,
} from '../../src/lib/site/ckan-api-client.js'
import {EXIT_CODES} from '../../src/lib/errors.js'
import {Secret} from '../../src/lib/secret.js'

const CREDENTIAL = 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJqdGkiOiJzeXNhZG1pbiIsImlhdCI6MX0.c2lnbmF0dXJl'
const JTI = 'jk8Bwg8PDBxlpBt6-Ju9D9tEYHs4T-s4hjdR7vem4ZfAYP3fe6l38hCMAwPGH6CQGXxPINTGOgaGc7ra'

type Seen = {body: string; headers: IncomingMessage['headers']; method: string; url: string}
type Handler = (request: Seen, response: ServerResponse) => void

function jwtFor(jti: string, exp?: number): string {
  const part = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url')
  return `${part({alg: 'HS256', typ: 'JWT'})}.${part({jti, iat: 1_795_319_809, ...(exp ? {exp} : {})})}.c2ln`
}

function send(response: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
  response.writeHead(status, {'Content-Type': 'application/json;charset=utf-8', ...headers})
  response.end(JSON.stringify(body))
}

function ok(response: ServerResponse, result: unknown) {
  send(response, 200, {help: 'h', result, success: true})
}

/** A plain HTTP server whose answers the test scripts; it records every request it received. */
async function startServer(handler: Handler): Promise<{seen: Seen[]; url: URL}> {
  const seen: Seen[] = []
  const server: Server = createServer((request, response) => {
    let body = ''
    request.on('data', (chunk) => {
      body += chunk
    })
    request.on('end', () => {
      const entry = {body, headers: request.headers, method: request.method ?? '', url: request.url ?? ''}
      seen.push(entry)
      handler(entry, response)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  onTestFinished(async () => {
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  })
  return {seen, url: new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)}
}

function client(url: URL, options: {headerName?: string; timeoutMs?: number} = {}) {
  const api = new CkanApiClient({ckanUrl: url, credential: new Secret(CREDENTIAL), retryLimit: 3, ...options})
  onTestFinished(() => api.close())
  return api
}

async function failure(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise
  } catch (error) {
    return error as Error
  }
  throw new Error('expected a failure')
}

describe('CkanApiClient against a local HTTP server', () => {
  it('reads status_show anonymously and sends the credential raw in Authorization for other calls', async () => {
    const {seen, url} = await startServer((request, response) => {
      if (request.url.includes('status_show'))
        ok(response, {ckan_version: '2.9.11', extensions: ['stats', 'expire_api_token'], site_url: 'http://x'})
      else ok(response, {email: 'a@example.org', id: 'id-1', name: 'alice', state: 'active', sysadmin: true})
    })
    const api = client(url)
    expect(await api.statusShow()).toEqual({
      ckanVersion: '2.9.11',
      extensions: ['stats', 'expire_api_token'],
      siteUrl: 'http://x',
    })
    expect(seen[0]?.headers.authorization).toBeUndefined()
    expect(seen[0]?.url).toBe('/api/3/action/status_show')
    expect((await api.userShow('alice')).sysadmin).toBe(true)
    expect(seen[1]?.headers.authorization).toBe(CREDENTIAL)
    expect(seen[1]?.url).toBe('/api/3/action/user_show?id=alice')
  })

  it('keeps a path prefix of the site URL and uses a configured header name', async () => {
    const {seen, url} = await startServer((_request, response) => ok(response, []))
    const api = client(new URL('/ckan', url), {headerName: 'X-CKAN-API-Key'})
    await api.listApiTokens('alice')
    expect(seen[0]?.url).toBe('/ckan/api/3/action/api_token_list?user=alice&user_id=alice')
    expect(seen[0]?.headers['x-ckan-api-key']).toBe(CREDENTIAL)
    expect(seen[0]?.headers.authorization).toBeUndefined()
  })

  it('creates a token and learns its jti from the JWT payload', async () => {
    const exp = 1_900_000_000
    const {seen, url} = await startServer((_request, response) => ok(response, {token: jwtFor(JTI, exp)}))
    const created = await client(url).createApiToken({expiresIn: 30, name: 'ckan-migrate', unit: 86_400, user: 'alice'})
    expect(created.jti.reveal()).toBe(JTI)
    expect(created.token.reveal()).toBe(jwtFor(JTI, exp))
    expect(created.expiresAt).toBe(new Date(exp * 1000).toISOString())
    expect(String(created.token)).toBe('[redacted]')
    expect(JSON.parse(seen[0]?.body ?? '')).toEqual({expires_in: 30, name: 'ckan-migrate', unit: 86_400, user: 'alice'})
  })

  it("prefers the id CKAN 2.12 returns with the token (dev-v2.12's api_token_create), even for a token that is not a JWT", async () => {
    // A plugin (IApiToken) may encode tokens its own way: 2.12's id still names the jti.
    const {url} = await startServer((_request, response) =>
      ok(response, {id: JTI, token: 'opaque-token-from-a-plugin'}),
    )
    const created = await client(url).createApiToken({name: 'n', user: 'alice'})
    expect(created.jti.reveal()).toBe(JTI)
    expect(created).toMatchObject({expiresAt: null, issuedAt: null})
    // Both: the returned id wins over the payload.
    const both = await startServer((_request, response) => ok(response, {id: JTI, token: jwtFor('stale-jti')}))
    expect((await client(both.url).createApiToken({name: 'n', user: 'alice'})).jti.reveal()).toBe(JTI)
  })

  it('lists tokens with their jti wrapped as a secret', async () => {
    const {url} = await startServer((_request, response) =>
      ok(response, [{created_at: '2026-11-22T03:56:49.625661', id: JTI, last_access: null, name: 'n', user_id: 'u1'}]),
    )
    const [row] = await client(url).listApiTokens('alice')
    expect(row?.id.reveal()).toBe(JTI)
    expect(JSON.stringify(row)).not.toContain(JTI)
    expect(row).toMatchObject({createdAt: '2026-11-22T03:56:49.625661', lastAccess: null, name: 'n', userId: 'u1'})
  })

  it.each([
    [
      403,
      {__type: 'Authorization Error', message: 'Access denied: Action api_token_create requires an authenticated user'},
      'Access denied: Action api_token_create requires an authenticated user',
    ],
    [404, {__type: 'Not Found Error', message: 'Not found: User not found'}, 'Not found: User not found'],
    [409, {__type: 'Validation Error', user: ['Missing value']}, 'user: Missing value'],
  ])('turns HTTP %i into a CkanApiError quoting CKAN (exit 4)', async (status, error, message) => {
    const {seen, url} = await startServer((_request, response) =>
      send(response, status, {error, help: 'h', success: false}),
    )
    const thrown = await failure(client(url).createApiToken({name: 'n', user: 'alice'}))
    expect(thrown).toBeInstanceOf(CkanApiError)
    expect((thrown as CkanApiError).status).toBe(status)
    expect((thrown as CkanApiError).exitCode).toBe(EXIT_CODES.ckanRejected)
    expect(thrown.message).toBe(`CKAN rejected api_token_create (HTTP ${status}): ${message}`)
    expect(seen).toHaveLength(1)
  })

  it("quotes CKAN's bare 400 strings without the request it echoes", async () => {
    const {url} = await startServer((_request, response) =>
      send(
        response,
        400,
        `Bad request - JSON Error: Error decoding JSON data. JSON data extracted from the request: {"jti": "${JTI}"}`,
      ),
    )
    const thrown = await failure(client(url).revokeApiToken(new Secret(JTI)))
    expect(thrown.message).toBe(
      'CKAN rejected api_token_revoke (HTTP 400): Bad request - JSON Error: Error decoding JSON data.',
    )
  })

  it('never shows the credential or a jti that CKAN echoes back', async () => {
    const {url} = await startServer((request, response) =>
      send(response, 409, {
        error: {
          __type: 'Validation Error',
          jti: [`bad ${JSON.parse(request.body).jti} from ${request.headers.authorization}`],
        },
        success: false,
      }),
    )
    const thrown = await failure(client(url).revokeApiToken(new Secret(JTI)))
    expect(thrown.message).toContain('[redacted]')
    expect(thrown.message).not.toContain(JTI)
    expect(thrown.message).not.toContain(CREDENTIAL)
    expect(JSON.stringify(thrown)).not.toContain(CREDENTIAL)
  })

  it('never shows part of a secret CKAN echoes at the end of a long message (redacted before it is shortened)', async () => {
    const {url} = await startServer((request, response) =>
      send(response, 409, {
        error: {message: `${'y'.repeat(170)} key=${request.headers.authorization} jti=${JSON.parse(request.body).jti}`},
        success: false,
      }),
    )
    const thrown = await failure(client(url).revokeApiToken(new Secret(JTI)))
    expect(thrown.message).toContain('key=[redacted]')
    for (const secret of [CREDENTIAL, JTI]) {
      for (let length = 8; length <= secret.length; length += 1)
        expect(thrown.message).not.toContain(secret.slice(0, length))
    }
  })

  it('refuses a get_site_user answer that names no user (exit 4), instead of crashing on it', async () => {
    const {url} = await startServer((_request, response) => ok(response, null))
    const thrown = await failure(client(url).getSiteUser())
    expect(thrown).toBeInstanceOf(CkanApiError)
    expect((thrown as CkanApiError).exitCode).toBe(EXIT_CODES.ckanRejected)
    expect(thrown.message).toMatch(/get_site_user .*names no user/)
  })

  it('retries api_token_create after a 429, honouring Retry-After, and creates one token', async () => {
    let calls = 0
    const {seen, url} = await startServer((_request, response) => {
      calls += 1
      if (calls === 1) send(response, 429, 'slow down', {'Retry-After': '1'})
      else ok(response, {token: jwtFor(JTI)})
    })
    const started = Date.now()
    const created = await client(url).createApiToken({name: 'n', user: 'alice'})
    expect(created.jti.reveal()).toBe(JTI)
    expect(seen).toHaveLength(2)
    // A lower bound set by the server's Retry-After, not a speed check: it fails only if the wait is skipped.
    expect(Date.now() - started).toBeGreaterThanOrEqual(950)
  })

  it('never replays api_token_create after a 5xx: the outcome is unknown', async () => {
    const {seen, url} = await startServer((_request, response) => send(response, 502, '<html>Bad Gateway</html>'))
    const thrown = await failure(client(url).createApiToken({name: 'n', user: 'alice'}))
    expect(thrown).toBeInstanceOf(OutcomeUnknownError)
    expect((thrown as OutcomeUnknownError).status).toBe(502)
    expect(seen).toHaveLength(1)
  })

  it('never replays api_token_create after a timeout or a reset after sending', async () => {
    const hang = await startServer(() => {})
    const timedOut = await failure(client(hang.url, {timeoutMs: 300}).createApiToken({name: 'n', user: 'alice'}))
    expect(timedOut).toBeInstanceOf(OutcomeUnknownError)
    expect(timedOut.message).toBe(
      'The outcome of api_token_create is unknown: no answer within 300 ms (--timeout, 1 attempt)',
    )
    expect(hang.seen).toHaveLength(1)

    const reset = await startServer((_request, response) => response.socket?.destroy())
    const lost = await failure(client(reset.url).createApiToken({name: 'n', user: 'alice'}))
    expect(lost).toBeInstanceOf(OutcomeUnknownError)
    expect(reset.seen).toHaveLength(1)
  })

  it('retries reads through 5xx, resets and timeouts', async () => {
    let calls = 0
    const {seen, url} = await startServer((_request, response) => {
      calls += 1
      if (calls === 1) send(response, 503, 'busy')
      else if (calls === 2) response.socket?.destroy()
      else ok(response, [])
    })
    expect(await client(url).listApiTokens('alice')).toEqual([])
    expect(seen).toHaveLength(3)
  })

  it('bounds a read by --timeout, its retries included: a stalled attempt gets half, a retry the rest', async () => {
    let calls = 0
    const {seen, url} = await startServer((_request, response) => {
      calls += 1
      // The first attempt hangs: it gets half of the 1.6 s; the retry (after at most 0.3 s) the rest.
      if (calls > 1) ok(response, [])
    })
    expect(await client(url, {timeoutMs: 1600}).listApiTokens('alice')).toEqual([])
    expect(seen).toHaveLength(2)

    const hang = await startServer(() => {})
    const thrown = await failure(client(hang.url, {timeoutMs: 400}).listApiTokens('alice'))
    expect(thrown).toBeInstanceOf(CkanUnreachableError)
    expect(thrown.message).toMatch(
      /^Cannot reach CKAN for api_token_list: no answer within 400 ms \(--timeout, [12] attempts?\)$/,
    )
    // Before, each attempt had the whole --timeout: 1 + 3 retries of 400 ms each.
    expect(hang.seen.length).toBeLessThanOrEqual(2)
  })

  it('spends a budget shared by several api_token_create calls, its retries included', async () => {
    const {seen, url} = await startServer((_request, response) =>
      send(response, 429, 'slow down', {'Retry-After': '0'}),
    )
    const api = client(url)
    const budget = new AttemptBudget(6)
    const first = await failure(api.createApiToken({name: 'n', user: 'alice'}, budget))
    expect(first).toBeInstanceOf(CkanApiError)
    expect((first as CkanApiError).status).toBe(429)
    // The client's own limit (1 + retryLimit 3) ends the first call; the budget ends the second.
    expect(seen).toHaveLength(4)
    await failure(api.createApiToken({name: 'n', user: 'alice'}, budget))
    expect(seen).toHaveLength(6)
    expect(budget.left).toBe(0)
  })

  it('tells the concurrency limiter about every attempt, retries included, on both request paths', async () => {
    let calls = 0
    const {url} = await startServer((_request, response) => {
      calls += 1
      if (calls === 1) send(response, 503, 'busy')
      else if (calls === 2) response.socket?.destroy()
      else if (calls === 3) ok(response, [])
      else if (calls === 4) send(response, 429, 'slow down', {'Retry-After': '1'})
      else ok(response, {token: jwtFor(JTI)})
    })
    const limiter = new AdaptiveLimiter({max: 2, mode: 'fixed'})
    const api = new CkanApiClient({ckanUrl: url, credential: new Secret(CREDENTIAL), observer: limiter, retryLimit: 3})
    onTestFinished(() => api.close())
    // A read (503, reset, 200), then a create (429, 200), both through the one request path.
    await api.withCredential(new Secret(CREDENTIAL)).listApiTokens('alice')
    await api.createApiToken({name: 'n', user: 'alice'})
    const report = limiter.report()
    expect(report.requests).toBe(5)
    expect(report.overloadSignals).toBe(2)
    expect(report.action).toBe('api_token_list')
  })

  it('gives up on reads after its retries with CKAN’s words (exit 4)', async () => {
    const {seen, url} = await startServer((_request, response) =>
      send(response, 500, {error: {__type: 'Internal Server Error', message: 'Internal Server Error'}, success: false}),
    )
    const thrown = await failure(client(url).userShow('alice'))
    expect(thrown).toBeInstanceOf(CkanApiError)
    expect(thrown.message).toBe('CKAN rejected user_show (HTTP 500): Internal Server Error')
    expect(seen).toHaveLength(4)
  }, 30_000)

  it('says a URL that is not an action API is unreachable (exit 3)', async () => {
    const {url} = await startServer((_request, response) => {
      response.writeHead(404, {'Content-Type': 'text/html'})
      response.end('<html>Not Found</html>')
    })
    const thrown = await failure(client(url).statusShow())
    expect(thrown).toBeInstanceOf(CkanUnreachableError)
    expect((thrown as CkanUnreachableError).exitCode).toBe(EXIT_CODES.ckanUnreachable)
    expect(thrown.message).toMatch(
      /^http:\/\/127\.0\.0\.1:\d+\/api\/3\/action\/ is not a CKAN action API: status_show got HTTP 404 that is not a CKAN action API answer$/,
    )
    expect((thrown as CkanUnreachableError).suggestion).toMatch(/ckan\.site_url.*path prefix.*proxy/)
  })

  it('says a server answering an HTML page with 200 is not a CKAN action API (not "Cannot reach CKAN")', async () => {
    const {url} = await startServer((_request, response) => {
      response.writeHead(200, {'Content-Type': 'text/html'})
      response.end('<html><body>Welcome to nginx!</body></html>')
    })
    const thrown = await failure(client(url).statusShow())
    expect((thrown as CkanUnreachableError).exitCode).toBe(EXIT_CODES.ckanUnreachable)
    expect(thrown.message).toMatch(
      /^http:\/\/127\.0\.0\.1:\d+\/api\/3\/action\/ is not a CKAN action API: status_show got HTTP 200 with a page that is not JSON$/,
    )
    expect(thrown.message).not.toMatch(/Cannot reach/)
  })

  it('reports a refused connection as unreachable (exit 3), also for api_token_create', async () => {
    const {url} = await startServer(() => {})
    const closed = new URL(url)
    // A port nobody listens on: take the server's and close it at once.
    const probe = createServer()
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
    closed.port = String((probe.address() as AddressInfo).port)
    await new Promise((resolve) => probe.close(resolve))
    const thrown = await failure(client(closed).createApiToken({name: 'n', user: 'alice'}))
    expect(thrown).toBeInstanceOf(CkanUnreachableError)
    expect(thrown.message).toMatch(
      /^Cannot reach CKAN for api_token_create: connection refused on port \d+ of 127\.0\.0\.1 \(nothing listens there\)$/,
    )
  }, 60_000)
})

describe('CkanApiClient over TLS', () => {
  let folder: string
  let caPath: string
  let otherCaPath: string
  let servers: Array<{close(): void}> = []

  function makeCa(name: string): {cert: string; key: string} {
    const key = join(folder, `${name}.key`)
    const cert = join(folder, `${name}.pem`)
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-keyout',
        key,
        '-out',
        cert,
        '-days',
        '2',
        '-subj',
        `/CN=${name}`,
      ],
      {stdio: 'ignore'},
    )
    return {cert, key}
  }

  function makeLeaf(ca: {cert: string; key: string}, name: string, host: string): {cert: string; key: string} {
    const key = join(folder, `${name}.key`)
    const csr = join(folder, `${name}.csr`)
    const cert = join(folder, `${name}.pem`)
    const extensions = join(folder, `${name}.ext`)
    writeFileSync(extensions, `subjectAltName=${host}\n`)
    execFileSync(
      'openssl',
      ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', csr, '-subj', `/CN=${name}`],
      {stdio: 'ignore'},
    )
    execFileSync(
      'openssl',
      [
        'x509',
        '-req',
        '-in',
        csr,
        '-CA',
        ca.cert,
        '-CAkey',
        ca.key,
        '-CAcreateserial',
        '-out',
        cert,
        '-days',
        '2',
        '-extfile',
        extensions,
      ],
      {stdio: 'ignore'},
    )
    return {cert, key}
  }

  async function startTls(leaf: {cert: string; key: string}): Promise<URL> {
    const server = createHttpsServer(
      {cert: readFileSync(leaf.cert), key: readFileSync(leaf.key)},
      (_request, response) => ok(response, {ckan_version: '2.10.10', extensions: [], site_url: 'https://x'}),
    )
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    servers.push({close: () => server.close()})
    return new URL(`https://127.0.0.1:${(server.address() as AddressInfo).port}`)
  }

  beforeAll(() => {
    folder = mkdtempSync(join(tmpdir(), 'ckan-migrate-tls-'))
    const ca = makeCa('test-ca')
    caPath = ca.cert
    otherCaPath = makeCa('other-ca').cert
    makeLeaf(ca, 'right', 'IP:127.0.0.1')
    makeLeaf(ca, 'wrong', 'DNS:other.example.org')
  })

  afterAll(() => {
    for (const server of servers) server.close()
    servers = []
    rmSync(folder, {force: true, recursive: true})
  })

  it('refuses a private CA by default (exit 15) and trusts it with --ca-cert', async () => {
    const url = await startTls({cert: join(folder, 'right.pem'), key: join(folder, 'right.key')})
    const plain = new CkanApiClient({ckanUrl: url})
    const thrown = await failure(plain.statusShow())
    await plain.close()
    expect(thrown).toBeInstanceOf(CkanTlsError)
    expect((thrown as CkanTlsError).exitCode).toBe(EXIT_CODES.tlsFailure)
    expect((thrown as CkanTlsError).suggestion).toContain('--ca-cert')

    const trusting = new CkanApiClient({caCertPath: caPath, ckanUrl: url})
    expect((await trusting.statusShow()).ckanVersion).toBe('2.10.10')
    await trusting.close()

    const wrongCa = new CkanApiClient({caCertPath: otherCaPath, ckanUrl: url})
    expect(await failure(wrongCa.statusShow())).toBeInstanceOf(CkanTlsError)
    await wrongCa.close()
  })

  it('refuses a certificate for another host even from a trusted CA (exit 15)', async () => {
    const url = await startTls({cert: join(folder, 'wrong.pem'), key: join(folder, 'wrong.key')})
    const api = new CkanApiClient({caCertPath: caPath, ckanUrl: url})
    const thrown = await failure(api.statusShow())
    await api.close()
    expect(thrown).toBeInstanceOf(CkanTlsError)
    expect(thrown.message).toMatch(/ERR_TLS_CERT_ALTNAME_INVALID/)
  })

  it('says what is wrong with an unreadable --ca-cert (exit 7)', () => {
    expect(
      () => new CkanApiClient({caCertPath: join(folder, 'missing.pem'), ckanUrl: new URL('https://127.0.0.1')}),
    ).toThrow(/Cannot read --ca-cert .*missing\.pem: it does not exist/)
  })
})
