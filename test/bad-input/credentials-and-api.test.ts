import {execFile} from 'node:child_process'
import {writeFile} from 'node:fs/promises'
import {request as httpRequest} from 'node:http'
import {createServer as createHttpsServer, type Server as HttpsServer} from 'node:https'
import {createServer as createNetServer, type Server as NetServer, type Socket} from 'node:net'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {promisify} from 'node:util'
import pg from 'pg'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {runCliJson} from '../helpers/run-cli.js'
import {issueTokensArgs} from '../helpers/site-commands.js'
import {startTestSite, type TestSite} from '../helpers/test-site.js'
import {exists, expectNoLeak, expectRefused, removeFolder, temporaryFolder} from './support.js'

const execFileAsync = promisify(execFile)

async function queryOne<T extends pg.QueryResultRow>(site: TestSite, text: string, values: unknown[] = []): Promise<T> {
  const client = new pg.Client({connectionString: site.databaseUrl})
  await client.connect()
  try {
    return (await client.query<T>(text, values)).rows[0]!
  } finally {
    await client.end()
  }
}

/** Calls one action of the site's emulator with the admin's credential. */
async function action<T>(site: TestSite, name: string, body: Record<string, unknown>): Promise<T> {
  const response = await fetch(`${site.ckanUrl}/api/3/action/${name}`, {
    body: JSON.stringify(body),
    headers: {Authorization: site.adminCredential.reveal(), 'Content-Type': 'application/json'},
    method: 'POST',
  })
  const envelope = (await response.json()) as {error?: unknown; result: T; success: boolean}
  if (!envelope.success) throw new Error(`${name} failed: ${JSON.stringify(envelope.error)}`)
  return envelope.result
}

async function secretFile(dir: string, name: string, text: string): Promise<string> {
  const path = join(dir, name)
  await writeFile(path, text, {mode: 0o600})
  return path
}

async function listen<S extends HttpsServer | NetServer>(server: S): Promise<{port: number; server: S}> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {port: (server.address() as {port: number}).port, server}
}

async function close(server: HttpsServer | NetServer | undefined): Promise<void> {
  if (server) await new Promise((resolve) => server.close(resolve))
}

describe('bad input: credentials and the action API (CKAN 2.9)', () => {
  let site: TestSite
  let dir: string
  let secrets: string[]
  const issue = (apiKeyFile: string, out: string, ...extra: string[]) =>
    issueTokensArgs({...site, apiKeyFile}, out, ...extra)

  beforeAll(async () => {
    site = await startTestSite({autoStop: false, users: 30, version: '2.9'})
    dir = await temporaryFolder('ckan-migrate-bad-', {autoRemove: false})
    secrets = [site.adminCredential.reveal()]
    delete process.env.CKAN_MIGRATE_API_KEY
  })
  afterAll(async () => {
    await site?.stop()
    await removeFolder(dir)
  })

  it('a garbage credential: CKAN treats it as anonymous, refused, no run folder', async () => {
    const key = await secretFile(dir, 'garbage.key', 'not-a-key-at-all\n')
    const out = join(dir, 'garbage-run')
    await expectRefused(issue(key, out), {
      code: 'ckanRejected',
      message:
        /^CKAN does not accept the credential in \S*garbage\.key: CKAN treats it as anonymous \(a revoked, expired or mistyped key or token\) \(sent in Authorization, then in X-CKAN-API-Key\)$/,
      secrets,
    })
    expect(await exists(out)).toBe(false)
  })

  it('a non-sysadmin’s legacy key', async () => {
    const {apikey} = await queryOne<{apikey: string}>(
      site,
      `SELECT apikey FROM "user" WHERE NOT sysadmin AND state = 'active' AND apikey IS NOT NULL AND name <> $1 ORDER BY name LIMIT 1`,
      [site.siteUserName],
    )
    const key = await secretFile(dir, 'user.key', `${apikey}\n`)
    const out = join(dir, 'user-run')
    await expectRefused(issue(key, out), {
      code: 'ckanRejected',
      message: /user\.key belongs to a user who is not a sysadmin/,
      secrets: [...secrets, apikey],
    })
    expect(await exists(out)).toBe(false)
  })

  it('no credential at all (no --api-key-file, no CKAN_MIGRATE_API_KEY)', async () => {
    const out = join(dir, 'none-run')
    await expectRefused(['issue-tokens', '--ckan-url', site.ckanUrl, '--ckan-ini', site.ckanIni, '--out', out], {
      code: 'badInput',
      message: /^No CKAN credential given$/,
      suggestion: /--api-key-file FILE .* CKAN_MIGRATE_API_KEY/,
    })
    expect(await exists(out)).toBe(false)
  })

  it('a credential file holding a NUL or a non-ASCII character: bad input, not a lost connection', async () => {
    for (const [name, text] of [
      ['nul.key', `${site.adminCredential.reveal()}\u0000\n`],
      ['latin.key', `${site.adminCredential.reveal()}é\n`],
    ] as const) {
      const key = await secretFile(dir, name, text)
      await expectRefused(issue(key, join(dir, `${name}-run`)), {
        code: 'badInput',
        message: /holds a character an API token or key cannot have \(binary or non-ASCII\)$/,
        secrets,
      })
      expect(await exists(join(dir, `${name}-run`))).toBe(false)
    }
  })

  it('a credential file holding two lines (the admin key and something else)', async () => {
    const key = await secretFile(dir, 'two.key', `${site.adminCredential.reveal()}\nsecond-line\n`)
    await expectRefused(issue(key, join(dir, 'two-run')), {
      code: 'badInput',
      message: /two\.key must hold exactly one API token or key, with nothing else/,
      secrets: [...secrets, 'second-line'],
    })
  })

  it('a credential file that does not exist', async () => {
    await expectRefused(issue(join(dir, 'missing.key'), join(dir, 'missing-run')), {
      code: 'badInput',
      message: /Cannot read the API key file .*missing\.key: it does not exist/,
    })
  })

  it('a CKAN nobody answers on (connection refused)', async () => {
    const {port, server} = await listen(createNetServer())
    await close(server)
    const out = join(dir, 'refused-run')
    await expectRefused(issueTokensArgs({...site, ckanUrl: `http://127.0.0.1:${port}`}, out), {
      code: 'ckanUnreachable',
      message: /^Cannot reach CKAN for status_show/,
      secrets,
    })
    expect(await exists(out)).toBe(false)
  })

  it('a --ckan-url holding a login, or not http(s): refused without echoing it, no run folder', async () => {
    const withLogin = new URL(site.ckanUrl)
    withLogin.username = 'ckan'
    withLogin.password = 's3cret-pw'
    const out = join(dir, 'login-url-run')
    await expectRefused(issueTokensArgs({...site, ckanUrl: withLogin.href}, out), {
      code: 'badInput',
      message: /^The CKAN URL holds a user name or password$/,
      secrets: [...secrets, 's3cret-pw'],
    })
    await expectRefused(['audit', '--database-url', site.databaseUrl, '--ckan-url', 'ftp://127.0.0.1/'], {
      code: 'badInput',
      message: /^The CKAN URL scheme ftp:\/\/ is not HTTP$/,
    })
    expect(await exists(out)).toBe(false)
  })

  it('a CKAN that never answers (--timeout 1)', async () => {
    const sockets = new Set<Socket>()
    const {port, server} = await listen(createNetServer((socket) => sockets.add(socket)))
    try {
      await expectRefused(
        [
          'issue-tokens',
          '--ckan-url',
          `http://127.0.0.1:${port}`,
          '--api-key-file',
          site.apiKeyFile,
          '--ckan-ini',
          site.ckanIni,
          '--out',
          join(dir, 'timeout-run'),
          '--timeout',
          '1',
        ],
        {
          code: 'ckanUnreachable',
          message: /status_show.*(timed out|timeout|no answer)/i,
          secrets,
        },
      )
    } finally {
      for (const socket of sockets) socket.destroy()
      await close(server)
    }
    expect(await exists(join(dir, 'timeout-run'))).toBe(false)
  })

  it('a CKAN that answers 500 to everything', async () => {
    site.emulator.setFaults({
      actions: ['status_show', 'get_site_user', 'user_show', 'api_token_create', 'api_token_list'],
      status500: 1,
    })
    try {
      await expectRefused(issue(site.apiKeyFile, join(dir, '500-run')), {code: 'ckanRejected', message: /500/, secrets})
    } finally {
      site.emulator.setFaults({})
    }
    expect(await exists(join(dir, '500-run'))).toBe(false)
  })

  it('the database of one site and the API of another', async () => {
    const other = await startTestSite({seed: 'another-site', users: 15, version: '2.9'})
    await expectRefused(
      [
        'issue-tokens',
        '--ckan-url',
        site.ckanUrl,
        '--api-key-file',
        site.apiKeyFile,
        '--ckan-ini',
        other.ckanIni,
        '--out',
        join(dir, 'mixed-run'),
      ],
      {
        code: 'badInput',
        message: /are different sites/,
        secrets: [...secrets, other.adminCredential.reveal()],
      },
    )
    expect(await exists(join(dir, 'mixed-run'))).toBe(false)
  })

  describe('TLS', () => {
    let proxy: HttpsServer
    let port: number
    let certFile: string

    beforeAll(async () => {
      // A self-signed certificate for 127.0.0.1, and an HTTPS front for the emulator.
      const keyFile = join(dir, 'tls-key.pem')
      certFile = join(dir, 'tls-cert.pem')
      await execFileAsync('openssl', [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-keyout',
        keyFile,
        '-out',
        certFile,
        '-days',
        '2',
        '-subj',
        '/CN=127.0.0.1',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
      ])
      const {readFile} = await import('node:fs/promises')
      const target = new URL(site.ckanUrl)
      const server = createHttpsServer({cert: await readFile(certFile), key: await readFile(keyFile)}, (req, res) => {
        const upstream = httpRequest(
          {headers: req.headers, host: target.hostname, method: req.method, path: req.url, port: target.port},
          (answer) => {
            res.writeHead(answer.statusCode ?? 502, answer.headers)
            answer.pipe(res)
          },
        )
        upstream.on('error', () => res.destroy())
        req.pipe(upstream)
      })
      ;({port, server: proxy} = await listen(server))
    })
    afterAll(() => close(proxy))

    it('a self-signed certificate is refused (TLS is never skipped)', async () => {
      const out = join(dir, 'tls-run')
      await expectRefused(issueTokensArgs({...site, ckanUrl: `https://127.0.0.1:${port}`}, out, '--dry-run'), {
        code: 'tlsFailure',
        message: /^TLS failed for status_show: DEPTH_ZERO_SELF_SIGNED_CERT/,
        secrets,
        suggestion: /--ca-cert/,
      })
      expect(await exists(out)).toBe(false)
    })

    it('--ca-cert that is not a PEM certificate', async () => {
      const notPem = await secretFile(dir, 'not-a-cert.pem', 'hello\n')
      await expectRefused(
        [
          'issue-tokens',
          '--ckan-url',
          `https://127.0.0.1:${port}`,
          '--api-key-file',
          site.apiKeyFile,
          '--ckan-ini',
          site.ckanIni,
          '--out',
          join(dir, 'tls-run'),
          '--ca-cert',
          notPem,
        ],
        {
          code: 'badInput',
          message: /--ca-cert .*not-a-cert\.pem holds no PEM certificate/,
        },
      )
    })

    it('…and trusted with --ca-cert (the same run then works)', async () => {
      const run = await runCliJson<{counts: {planned: number}}>([
        'issue-tokens',
        '--ckan-url',
        `https://127.0.0.1:${port}`,
        '--api-key-file',
        site.apiKeyFile,
        '--ckan-ini',
        site.ckanIni,
        '--out',
        join(dir, 'tls-run'),
        '--dry-run',
        '--ca-cert',
        certFile,
      ])
      expect(run.exitCode, run.stdout).toBe(0)
      expect(run.json.result?.counts.planned).toBeGreaterThan(0)
      expectNoLeak(run.stdout + run.stderr, secrets)
    })
  })
})

describe('bad input: credentials against CKAN 2.10 (expire_api_token)', () => {
  let site: TestSite
  let dir: string
  const issue = (apiKeyFile: string, ...extra: string[]) => [
    'issue-tokens',
    '--ckan-url',
    site.ckanUrl,
    '--api-key-file',
    apiKeyFile,
    '--ckan-ini',
    site.ckanIni,
    '--out',
    join(dir, 'run'),
    '--expires-in',
    '30',
    '--unit',
    'day',
    ...extra,
  ]

  beforeAll(async () => {
    site = await startTestSite({autoStop: false, expireApiToken: true, users: 20, version: '2.10'})
    dir = await temporaryFolder('ckan-migrate-bad-', {autoRemove: false})
  })
  afterAll(async () => {
    await site?.stop()
    await removeFolder(dir)
  })

  it('a legacy API key against 2.10', async () => {
    const {apikey} = await queryOne<{apikey: string}>(site, `SELECT apikey FROM "user" WHERE name = $1`, [
      site.adminName,
    ])
    expect(apikey).toBeTruthy()
    const key = await secretFile(dir, 'legacy.key', `${apikey}\n`)
    await expectRefused(issue(key), {
      code: 'ckanRejected',
      message: /legacy\.key is a legacy API key, and legacy keys stop working on 2\.10/,
      secrets: [apikey, site.adminCredential.reveal()],
    })
    expect(await exists(join(dir, 'run'))).toBe(false)
  })

  it('a revoked token', async () => {
    const {token} = await action<{token: string}>(site, 'api_token_create', {
      expires_in: 1,
      name: 'soon-revoked',
      unit: 86_400,
      user: site.adminName,
    })
    const jti = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')).jti as string
    await action(site, 'api_token_revoke', {jti})
    const key = await secretFile(dir, 'revoked.token', `${token}\n`)
    await expectRefused(issue(key), {
      code: 'ckanRejected',
      message:
        /CKAN refuses the credential in \S*revoked\.token for get_site_user \(403\): it is revoked, expired or mistyped, or its user is not a sysadmin/,
      secrets: [token, jti, site.adminCredential.reveal()],
    })
    expect(await exists(join(dir, 'run'))).toBe(false)
  })

  it('an expired token', async () => {
    const {token} = await action<{token: string}>(site, 'api_token_create', {
      expires_in: 1,
      name: 'short-lived',
      unit: 1,
      user: site.adminName,
    })
    const key = await secretFile(dir, 'expired.token', `${token}\n`)
    await sleep(2100)
    await expectRefused(issue(key), {
      code: 'ckanRejected',
      message: /^CKAN does not accept the credential in \S*expired\.token: the token expired on \d{4}-/,
      secrets: [token, site.adminCredential.reveal()],
    })
    expect(await exists(join(dir, 'run'))).toBe(false)
  })
})
