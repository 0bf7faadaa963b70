import {createHmac, randomUUID} from 'node:crypto'
import {readFile, writeFile} from 'node:fs/promises'

import {describe, expect, it} from 'vitest'

import {readCkanIni} from '../../src/lib/site/ckan-ini.js'
import {resolveJwtSecret} from '../../src/lib/site/ckan-settings.js'
import {decodeJwtPayload} from '../../src/lib/site/jwt.js'
import type {CkanVersion} from '../../src/lib/site/ckan-version.js'
import {querySite as sql} from '../helpers/site-commands.js'
import {startTestSite, type TestSite} from '../helpers/test-site.js'

/** Differences from CKAN 2.9.11 / 2.10.10 / 2.11.5 found in review, each checked over HTTP. */

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- CKAN's answers, read field by field
type Answer = {body: string; headers: Headers; json: any; status: number}

async function request(
  site: TestSite,
  path: string,
  options: {body?: BodyInit; credential?: string; headers?: Record<string, string>; method?: string} = {},
): Promise<Answer> {
  const headers: Record<string, string> = {...options.headers}
  if (options.credential) headers.Authorization = options.credential
  const response = await fetch(`${site.ckanUrl}${path}`, {body: options.body, headers, method: options.method ?? 'GET'})
  const body = await response.text()
  let json: unknown
  try {
    json = JSON.parse(body)
  } catch {
    json = undefined
  }
  return {body, headers: response.headers, json, status: response.status}
}

function post(site: TestSite, action: string, body: Record<string, unknown>, credential?: string): Promise<Answer> {
  return request(site, `/api/3/action/${action}`, {
    body: JSON.stringify(body),
    credential,
    headers: {'Content-Type': 'application/json'},
    method: 'POST',
  })
}

async function tokenFor(site: TestSite, user: string, extra: Record<string, unknown> = {}): Promise<string> {
  const answer = await post(site, 'api_token_create', {name: 'fidelity', user, ...extra}, site.adminCredential.reveal())
  expect(answer.status).toBe(200)
  return answer.json.result.token as string
}

const DENIED = {__type: 'Authorization Error', message: 'Access denied'}

/** A user written straight into the database, as CKAN's own tables would hold it. */
async function addUser(
  site: TestSite,
  name: string,
  fields: {email?: null | string; fullname?: null | string; image_url?: null | string} = {},
): Promise<string> {
  const id = randomUUID()
  await sql(
    site,
    `INSERT INTO "user" (id, name, password, fullname, email, image_url, sysadmin, state, created)
     VALUES ($1, $2, 'x', $3, $4, $5, false, 'active', now())`,
    [id, name, fields.fullname ?? null, fields.email ?? `${name}@example.org`, fields.image_url ?? null],
  )
  return id
}

describe('CKAN emulator fidelity', () => {
  it('routes actions for GET and POST only: other methods are 405 without running the action, OPTIONS is answered by Flask', async () => {
    const site = await startTestSite({users: 10})
    const admin = site.adminCredential.reveal()
    const before = await sql<{n: string}>(site, 'SELECT count(*) AS n FROM api_token')
    for (const method of ['PUT', 'DELETE', 'PATCH']) {
      const answer = await request(site, '/api/3/action/api_token_create', {
        body: JSON.stringify({name: 'by-put', user: 'admin'}),
        credential: admin,
        headers: {'Content-Type': 'application/json'},
        method,
      })
      expect(answer.status, method).toBe(405)
      expect(answer.headers.get('content-type')).toMatch(/^text\/html/)
      expect(answer.json).toBeUndefined()
    }
    expect(await sql<{n: string}>(site, 'SELECT count(*) AS n FROM api_token')).toEqual(before)
    const options = await request(site, '/api/3/action/status_show', {method: 'OPTIONS'})
    expect(options.status).toBe(200)
    expect(options.body).toBe('')
    expect(options.headers.get('allow')).toBe('GET, HEAD, OPTIONS, POST')
    expect((await request(site, '/api/3', {method: 'POST'})).status).toBe(405)
    expect((await request(site, '/api/action/status_show', {method: 'DELETE'})).status).toBe(405)
  })

  it.each([
    ['2.9', '127.0.0.1'],
    ['2.10', 'default'],
    ['2.11', 'default'],
  ] as const)('%s without ckan.site_id: the site user is %s', async (version, name) => {
    const site = await startTestSite({settings: {'ckan.site_id': null}, users: 10, version})
    const admin = site.adminCredential.reveal()
    const siteUser = await request(site, '/api/3/action/get_site_user', {credential: admin})
    expect(siteUser.json.result.name).toBe(name)
    const listed = await request(site, '/api/3/action/user_list?all_fields=false', {credential: admin})
    expect(listed.json.result).not.toContain(name)
    const withSiteUser = await request(site, '/api/3/action/user_list?all_fields=false&include_site_user=true', {
      credential: admin,
    })
    expect(withSiteUser.json.result).toContain(name)
  })

  it('ckan.auth.public_user_details = false refuses user_show and user_list to anonymous callers', async () => {
    const site = await startTestSite({settings: {'ckan.auth.public_user_details': 'false'}, users: 10, version: '2.10'})
    const admin = site.adminCredential.reveal()
    for (const path of [
      '/api/3/action/user_show?id=admin',
      '/api/3/action/user_show?id=nosuch',
      '/api/3/action/user_list',
    ]) {
      const anonymous = await request(site, path)
      expect(anonymous.status, path).toBe(403)
      expect(anonymous.json.error).toEqual(DENIED)
    }
    expect((await request(site, '/api/3/action/user_show?id=admin', {credential: admin})).status).toBe(200)
    expect((await request(site, '/api/3/action/user_list', {credential: admin})).status).toBe(200)
  })

  it('user_list with an email is for sysadmins only', async () => {
    const site = await startTestSite({users: 30})
    const [someone] = await sql<{apikey: string; email: string}>(
      site,
      `SELECT apikey, email FROM "user" WHERE name LIKE 'user-%' AND apikey ~ '^[0-9a-f-]{36}$' AND email LIKE 'user-%' AND state = 'active' AND NOT sysadmin LIMIT 1`,
    )
    const path = `/api/3/action/user_list?email=${encodeURIComponent(someone!.email)}`
    for (const credential of [undefined, someone!.apikey]) {
      const refused = await request(site, path, {credential})
      expect(refused.status).toBe(403)
      expect(refused.json.error).toEqual(DENIED)
    }
    const admin = await request(site, path, {credential: site.adminCredential.reveal()})
    expect(admin.status).toBe(200)
    expect(admin.json.result.map((user: {email: string}) => user.email)).toEqual([someone!.email])
  })

  it('a callback parameter makes the request anonymous', async () => {
    const site = await startTestSite({users: 10, version: '2.10'})
    const admin = site.adminCredential.reveal()
    expect((await post(site, 'api_token_list', {user: 'admin'}, admin)).status).toBe(200)
    const anonymous = await post(site, 'api_token_list', {callback: 'x', user: 'admin'}, admin)
    expect(anonymous.status).toBe(403)
    expect(anonymous.json.error).toEqual(DENIED)
  })

  it('2.10+: api_token_list with an empty or null user_id is 409 Missing value', async () => {
    const site = await startTestSite({users: 10, version: '2.10'})
    const admin = site.adminCredential.reveal()
    const missing = {__type: 'Validation Error', user_id: ['Missing value']}
    const empty = await request(site, '/api/3/action/api_token_list?user_id=', {credential: admin})
    expect(empty.status).toBe(409)
    expect(empty.json.error).toEqual(missing)
    const nulled = await post(site, 'api_token_list', {user: 'admin', user_id: null}, admin)
    expect(nulled.status).toBe(409)
    expect(nulled.json.error).toEqual(missing)
  })

  it('2.9: a deleted caller is refused status_show, and user_show checks access before "not found"', async () => {
    const site = await startTestSite({users: 30})
    const [someone] = await sql<{apikey: string; name: string}>(
      site,
      `SELECT name, apikey FROM "user" WHERE name LIKE 'user-%' AND apikey ~ '^[0-9a-f-]{36}$' AND state = 'active' AND NOT sysadmin LIMIT 1`,
    )
    const token = await tokenFor(site, someone!.name)
    await sql(site, `UPDATE "user" SET state = 'deleted' WHERE name = $1`, [someone!.name])
    for (const credential of [someone!.apikey, token]) {
      const status = await request(site, '/api/3/action/status_show', {credential})
      expect(status.status).toBe(403)
      expect(status.json.error).toEqual(DENIED)
      const show = await request(site, '/api/3/action/user_show?id=nosuch', {credential})
      expect(show.status).toBe(403)
    }
    expect((await request(site, '/api/3/action/user_show?id=nosuch')).status).toBe(404)
  })

  it('reads multipart/form-data fields as CKAN reads request.form', async () => {
    const site = await startTestSite({users: 10, version: '2.10'})
    const form = new FormData()
    form.append('user', 'admin')
    form.append('name', 'from-multipart')
    const answer = await request(site, '/api/3/action/api_token_create', {
      body: form,
      credential: site.adminCredential.reveal(),
      method: 'POST',
    })
    expect(answer.status).toBe(200)
    const jti = decodeJwtPayload(answer.json.result.token)!.jti
    expect(await sql(site, 'SELECT name FROM api_token WHERE id = $1', [jti])).toEqual([{name: 'from-multipart'}])
  })

  describe.each(['2.9', '2.10'] as const)('%s: JWTs are decoded as PyJWT decodes them', (version) => {
    const b64 = (text: string) => Buffer.from(text).toString('base64url')
    async function forge(
      site: TestSite,
      claims: Record<string, unknown>,
      pad = false,
    ): Promise<{headers: Record<string, string>}> {
      const ini = await readCkanIni(site.ckanIni, {caseRule: version === '2.9' ? 'lowercase' : 'preserve'})
      const secret = (await resolveJwtSecret(ini, version as CkanVersion, 'encode')).secret
      const padded = (segment: string) => (pad ? segment + '='.repeat((4 - (segment.length % 4)) % 4) : segment)
      const input = `${padded(b64('{"alg":"HS256","typ":"JWT"}'))}.${padded(b64(JSON.stringify(claims)))}`
      const signature = createHmac('sha256', secret.reveal()).update(input).digest('base64url')
      return {headers: {Authorization: `${input}.${padded(signature)}`}}
    }

    it.each([
      ['no iat', {}, false, 200],
      ['a float iat', {iat: 1_700_000_000.5}, false, 200],
      ['padded base64url segments', {iat: 1_700_000_000}, true, 200],
      ['an nbf in the future', {iat: 1_700_000_000, nbf: 4_000_000_000}, false, 403],
      ['an aud claim', {aud: 'ckan', iat: 1_700_000_000}, false, 403],
    ] as const)('a token with %s', async (_case, claims, pad, status) => {
      const site = await startTestSite({users: 5, version})
      const jti = decodeJwtPayload(await tokenFor(site, 'admin'))!.jti
      const {headers} = await forge(site, {jti, ...claims}, pad)
      expect((await post(site, 'api_token_list', {user: 'admin'}, headers.Authorization)).status).toBe(status)
    })
  })

  it('expire_api_token: exp is stored as isoformat() with microseconds; a non-integer lifetime is "Invalid integer"', async () => {
    const site = await startTestSite({expireApiToken: true, users: 5, version: '2.10'})
    const admin = site.adminCredential.reveal()
    const token = await tokenFor(site, 'admin', {expires_in: 3, unit: 60})
    const claims = decodeJwtPayload(token)!
    const [row] = await sql<{exp: string}>(
      site,
      `SELECT plugin_extras->'expire_api_token'->>'exp' AS exp FROM api_token WHERE id = $1`,
      [claims.jti],
    )
    expect(row!.exp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?$/)
    expect(row!.exp).not.toMatch(/\.0{6}$/)
    expect(Math.floor(Date.parse(`${row!.exp}Z`) / 1000)).toBe(claims.exp)
    const invalid = await post(
      site,
      'api_token_create',
      {expires_in: 'abc', name: 'x', unit: 1.5, user: 'admin'},
      admin,
    )
    expect(invalid.status).toBe(409)
    expect(invalid.json.error).toEqual({
      __type: 'Validation Error',
      expires_in: ['Invalid integer'],
      unit: ['Invalid integer'],
    })
  })

  it('answers a path with bad percent-encoding as an unknown action, naming it as written', async () => {
    const site = await startTestSite({users: 5})
    const answer = await request(site, '/api/3/action/foo%ZZ')
    expect(answer.status).toBe(400)
    expect(answer.json).toBe('Bad request - Action name not known: foo%ZZ')
  })

  it('2.10+: a pending or deleted token owner is anonymous, but user.last_active is still updated', async () => {
    const site = await startTestSite({users: 30, version: '2.10'})
    const users = await sql<{name: string}>(
      site,
      `SELECT name FROM "user" WHERE name LIKE 'user-%' AND state = 'active' AND NOT sysadmin ORDER BY name LIMIT 2`,
    )
    for (const [index, state] of ['pending', 'deleted'].entries()) {
      const user = users[index]!.name
      const token = await tokenFor(site, user)
      await sql(site, `UPDATE "user" SET state = $2, last_active = NULL WHERE name = $1`, [user, state])
      expect((await post(site, 'api_token_list', {user}, token)).status).toBe(403)
      const [row] = await sql<{last_active: Date | null}>(site, 'SELECT last_active FROM "user" WHERE name = $1', [
        user,
      ])
      expect(row!.last_active, state).not.toBeNull()
    }
  })

  it('touches api_token.last_access on every request that carries a token, not only action calls', async () => {
    const site = await startTestSite({users: 5, version: '2.10'})
    const token = await tokenFor(site, 'admin')
    const {jti} = decodeJwtPayload(token)!
    for (const [path, status] of [
      ['/api/3', 200],
      ['/api/3/action/', 404],
      ['/no/such/page', 404],
    ] as const) {
      await sql(site, 'UPDATE api_token SET last_access = NULL WHERE id = $1', [jti])
      expect((await request(site, path, {credential: token})).status, path).toBe(status)
      const [row] = await sql<{last_access: Date | null}>(site, 'SELECT last_access FROM api_token WHERE id = $1', [
        jti,
      ])
      expect(row!.last_access, path).not.toBeNull()
    }
  })

  it.each(['2.9', '2.10', '2.11'] as const)(
    '%s: image_display_url is an uploaded image_url under the site URL, else image_url as it is',
    async (version) => {
      const site = await startTestSite({users: 5, version})
      const origin = new URL(site.ckanUrl).origin
      const images = {
        'img-empty': '',
        'img-external': 'https://images.example.org/me.png',
        'img-none': null,
        'img-query': 'me.png?',
        'img-upload': '2024-01-02-030405.678901me.png',
      }
      for (const [name, image_url] of Object.entries(images)) await addUser(site, name, {image_url})
      const expected: Record<string, null | string> = {
        'img-empty': '',
        'img-external': 'https://images.example.org/me.png',
        'img-none': null,
        'img-query': `${origin}/uploads/user/me.png`,
        'img-upload': `${origin}/uploads/user/2024-01-02-030405.678901me.png`,
      }
      for (const [name, url] of Object.entries(expected)) {
        const shown = await request(site, `/api/3/action/user_show?id=${name}`)
        expect(shown.json.result.image_url, name).toBe(images[name as keyof typeof images])
        expect(shown.json.result.image_display_url, name).toBe(url)
      }
      const listed = await request(site, '/api/3/action/user_list?q=img-')
      expect(
        Object.fromEntries(
          listed.json.result.map((user: {image_display_url: null | string; name: string}) => [
            user.name,
            user.image_display_url,
          ]),
        ),
      ).toEqual(expected)
    },
  )

  it('number_created_packages counts drafts and private datasets only in user_show for the user or a sysadmin', async () => {
    const site = await startTestSite({users: 5, version: '2.10'})
    const id = await addUser(site, 'creator')
    await addUser(site, 'someone-else')
    for (const [index, [state, isPrivate]] of (
      [
        ['active', false],
        ['active', true],
        ['draft', false],
        ['deleted', false],
        ['pending', true],
      ] as const
    ).entries())
      await sql(
        site,
        `INSERT INTO package (id, name, state, private, type, creator_user_id) VALUES ($1, $2, $3, $4, 'dataset', $5)`,
        [randomUUID(), `dataset-${index}`, state, isPrivate, id],
      )
    const admin = site.adminCredential.reveal()
    const own = await tokenFor(site, 'creator')
    const other = await tokenFor(site, 'someone-else')
    const count = async (path: string, credential?: string) =>
      (await request(site, path, {credential})).json.result.number_created_packages as number
    expect(await count('/api/3/action/user_show?id=creator')).toBe(1)
    expect(await count('/api/3/action/user_show?id=creator', other)).toBe(1)
    expect(await count(`/api/3/action/user_show?id=${id}`, own)).toBe(4)
    expect(await count('/api/3/action/user_show?id=creator', admin)).toBe(4)
    for (const credential of [own, admin]) {
      const listed = await request(site, '/api/3/action/user_list?q=creator', {credential})
      expect(listed.json.result.map((user: {number_created_packages: number}) => user.number_created_packages)).toEqual(
        [1],
      )
    }
  })

  it("user_list's q keeps its LIKE wildcards, ignores case, and searches email for sysadmins only", async () => {
    const site = await startTestSite({users: 5, version: '2.10'})
    await addUser(site, 'wild-alpha', {email: 'secret-mailbox@example.org', fullname: 'Alpha Person'})
    await addUser(site, 'wildxbeta', {fullname: '100% Beta'})
    const names = async (q: string, credential?: string) =>
      (await request(site, `/api/3/action/user_list?all_fields=false&q=${encodeURIComponent(q)}`, {credential})).json
        .result as string[]
    // Ordered by display name: '100% Beta' before 'Alpha Person'.
    expect(await names('WILD_')).toEqual(['wildxbeta', 'wild-alpha'])
    expect(await names('alpha%person')).toEqual(['wild-alpha'])
    expect(await names('100%')).toEqual(['wildxbeta'])
    expect(await names('secret-mailbox')).toEqual([])
    expect(await names('secret-mailbox', await tokenFor(site, 'wild-alpha'))).toEqual([])
    expect(await names('SECRET-MAILBOX', site.adminCredential.reveal())).toEqual(['wild-alpha'])
  })

  it("user_list's order_by: any user column, number_created_packages, display_name for unknown names, 409 for edits", async () => {
    const site = await startTestSite({users: 5, version: '2.11'})
    const ids = [
      await addUser(site, 'ord-c', {fullname: 'A'}),
      await addUser(site, 'ord-a', {fullname: 'C'}),
      await addUser(site, 'ord-b', {fullname: 'B'}),
    ]
    await sql(site, `UPDATE "user" SET created = '2001-01-01' WHERE name = 'ord-b'`)
    for (const name of ['ord-a', 'ord-a', 'ord-b'])
      await sql(
        site,
        `INSERT INTO package (id, name, state, private, type, creator_user_id) VALUES ($1, $2, 'active', false, 'dataset', (SELECT id FROM "user" WHERE name = $3))`,
        [randomUUID(), `pkg-${randomUUID()}`, name],
      )
    const names = async (orderBy: string, allFields = true) => {
      const answer = await request(
        site,
        `/api/3/action/user_list?q=ord-&all_fields=${allFields}&order_by=${encodeURIComponent(orderBy)}`,
      )
      expect(answer.status, orderBy).toBe(200)
      return answer.json.result.map((user: string | {name: string}) => (typeof user === 'string' ? user : user.name))
    }
    expect(await names('display_name')).toEqual(['ord-c', 'ord-b', 'ord-a'])
    expect(await names('no_such_attribute')).toEqual(['ord-c', 'ord-b', 'ord-a'])
    expect(await names('name', false)).toEqual(['ord-a', 'ord-b', 'ord-c'])
    expect(await names('created')).toEqual(['ord-b', 'ord-c', 'ord-a'])
    expect(await names('id')).toEqual(
      ['ord-c', 'ord-a', 'ord-b']
        .map((name, index) => [ids[index]!, name])
        .sort(([a], [b]) => (a! < b! ? -1 : 1))
        .map(([, name]) => name),
    )
    expect(await names('number_created_packages')).toEqual(['ord-c', 'ord-b', 'ord-a'])
    const edits = await request(site, '/api/3/action/user_list?order_by=edits')
    expect(edits.status).toBe(409)
    expect(edits.json.error).toEqual({__type: 'Validation Error', message: 'order_by=edits is no longer supported'})
    expect(Object.keys(edits.json.error)).toEqual(['message', '__type'])
    const namesOnly = await request(site, '/api/3/action/user_list?all_fields=false&order_by=number_created_packages')
    expect(namesOnly.status).toBe(500)
  })

  it.each(['2.10', '2.11'] as const)('%s: user_show without an id shows the caller', async (version) => {
    const site = await startTestSite({users: 5, version})
    const shown = await request(site, '/api/3/action/user_show', {credential: site.adminCredential.reveal()})
    expect(shown.status).toBe(200)
    expect(shown.json.result.name).toBe('admin')
    const anonymous = await request(site, '/api/3/action/user_show')
    expect(anonymous.status).toBe(404)
    expect(anonymous.json.error).toEqual({__type: 'Not Found Error', message: 'Not found'})
    expect(
      (await request(site, '/api/3/action/user_show?id=', {credential: site.adminCredential.reveal()})).status,
    ).toBe(404)
  })

  it('2.9: user_show without an id is "not found" whoever asks', async () => {
    const site = await startTestSite({users: 5, version: '2.9'})
    expect((await request(site, '/api/3/action/user_show', {credential: site.adminCredential.reveal()})).status).toBe(
      404,
    )
  })

  it.each([
    ['2.9', false],
    ['2.10', false],
    ['2.11', true],
  ] as const)('%s: user_create with with_apitoken returns a token: %s', async (version, returned) => {
    const site = await startTestSite({users: 5, version})
    const answer = await post(
      site,
      'user_create',
      {email: 'tokened@example.org', name: 'tokened', password: 'long-enough-password', with_apitoken: true},
      site.adminCredential.reveal(),
    )
    expect(answer.status).toBe(200)
    const tokens = await sql<{name: string}>(
      site,
      `SELECT t.name FROM api_token t JOIN "user" u ON u.id = t.user_id WHERE u.name = 'tokened'`,
    )
    if (!returned) {
      expect(answer.json.result).not.toHaveProperty('token')
      expect(tokens).toEqual([])
      return
    }
    expect(Object.keys(answer.json.result).at(-1)).toBe('token')
    expect(tokens).toEqual([{name: 'default'}])
    const shown = await request(site, '/api/3/action/user_show?id=tokened', {credential: answer.json.result.token})
    expect(shown.json.result.email).toBe('tokened@example.org')
  })

  it.each(['2.9', '2.10', '2.11'] as const)(
    '%s: user_create gives the new user a legacy key only with ckan.auth.create_default_api_keys, and shows it to the sysadmin',
    async (version) => {
      // set_api_key in ckan/model/user.py (2.9.11, unchanged in 2.10 and 2.11): default false.
      for (const setting of [false, true]) {
        const site = await startTestSite({createDefaultApiKeys: setting, users: 5, version})
        const answer = await post(
          site,
          'user_create',
          {email: 'newcomer@example.org', name: 'newcomer', password: 'long-enough-password'},
          site.adminCredential.reveal(),
        )
        expect(answer.status).toBe(200)
        const [row] = await sql<{apikey: null | string}>(site, `SELECT apikey FROM "user" WHERE name = 'newcomer'`)
        if (setting) expect(row!.apikey).toMatch(/^[\da-f]{8}-[\da-f]{4}-4[\da-f]{3}-[89ab][\da-f]{3}-[\da-f]{12}$/)
        else expect(row!.apikey).toBeNull()
        expect(answer.json.result.apikey ?? null).toBe(row!.apikey)
      }
    },
  )

  it('2.11: with expire_api_token, user_create with_apitoken creates the user, then fails on the token', async () => {
    const site = await startTestSite({expireApiToken: true, users: 5, version: '2.11'})
    const answer = await post(
      site,
      'user_create',
      {email: 'later@example.org', name: 'later', password: 'long-enough-password', with_apitoken: 'yes'},
      site.adminCredential.reveal(),
    )
    expect(answer.status).toBe(409)
    expect(answer.json.error).toEqual({
      __type: 'Validation Error',
      expires_in: ['Missing value'],
      unit: ['Missing value'],
    })
    expect(await sql(site, `SELECT state FROM "user" WHERE name = 'later'`)).toEqual([{state: 'active'}])
  })

  describe('which request header carries the credential (ckan/views/__init__.py, config_declaration.yaml)', () => {
    /** Rewrites the header lines of [app:main] (any case) and reloads the emulator, as a CKAN restart would. */
    async function headerConfig(site: TestSite, lines: string[]): Promise<void> {
      const text = await readFile(site.ckanIni, 'utf8')
      const kept = text.split('\n').filter((line) => !/^\s*(apikey|apitoken)_header_name\s*[=:]/i.test(line))
      const at = kept.findIndex((line) => line.trim() === '[app:main]')
      kept.splice(at + 1, 0, ...lines)
      await writeFile(site.ckanIni, kept.join('\n'))
      await site.emulator.loadConfig()
    }

    /** The status of api_token_list with the token in each header alone. */
    async function statusBy(site: TestSite, token: string, headers: string[]): Promise<Record<string, number>> {
      const out: Record<string, number> = {}
      for (const header of headers) {
        const answer = await request(site, '/api/3/action/api_token_list?user=admin', {headers: {[header]: token}})
        out[header] = answer.status
      }
      return out
    }

    const HEADERS = ['Authorization', 'X-CKAN-API-Key', 'X-Custom', 'X-Token']

    it('2.9 reads apikey_header_name (default X-CKAN-API-Key, keys lowercased), then Authorization; never apitoken_header_name', async () => {
      const site = await startTestSite({users: 5, version: '2.9'})
      const token = await tokenFor(site, 'admin')
      await headerConfig(site, [])
      expect(await statusBy(site, token, HEADERS)).toEqual({
        Authorization: 200,
        'X-CKAN-API-Key': 200,
        'X-Custom': 403,
        'X-Token': 403,
      })
      // 2.9's ConfigParser lowercases option names: APIKEY_HEADER_NAME is apikey_header_name.
      await headerConfig(site, ['APIKEY_HEADER_NAME = X-Custom', 'apitoken_header_name = X-Token'])
      expect(await statusBy(site, token, HEADERS)).toEqual({
        Authorization: 200,
        'X-CKAN-API-Key': 403,
        'X-Custom': 200,
        'X-Token': 403,
      })
      // The configured header wins: a garbage value there makes Authorization's valid token unread.
      const both = await request(site, '/api/3/action/api_token_list?user=admin', {
        headers: {Authorization: token, 'X-Custom': 'garbage'},
      })
      expect(both.status).toBe(403)
    })

    it('2.10 reads apikey_header_name (default X-CKAN-API-Key, case kept), then Authorization; apitoken_header_name is ignored', async () => {
      const site = await startTestSite({users: 5, version: '2.10'})
      const token = await tokenFor(site, 'admin')
      // As 2.10's own generated ini says (ckan-2.10.10-generated.ini L79).
      await headerConfig(site, ['apikey_header_name = X-CKAN-API-Key'])
      expect(await statusBy(site, token, HEADERS)).toEqual({
        Authorization: 200,
        'X-CKAN-API-Key': 200,
        'X-Custom': 403,
        'X-Token': 403,
      })
      await headerConfig(site, ['apitoken_header_name = X-Token', 'APIKEY_HEADER_NAME = X-Custom'])
      expect(await statusBy(site, token, HEADERS)).toEqual({
        Authorization: 200,
        'X-CKAN-API-Key': 200,
        'X-Custom': 403,
        'X-Token': 403,
      })
      await headerConfig(site, ['apikey_header_name = X-Custom'])
      expect(await statusBy(site, token, HEADERS)).toEqual({
        Authorization: 200,
        'X-CKAN-API-Key': 403,
        'X-Custom': 200,
        'X-Token': 403,
      })
    })

    it('2.11 reads one header: apitoken_header_name, else its legacy key apikey_header_name, else Authorization', async () => {
      const site = await startTestSite({users: 5, version: '2.11'})
      const token = await tokenFor(site, 'admin')
      // 2.11's generated ini (L79); X-CKAN-API-Key is refused (transcript-ckan211.md, "via X-CKAN-API-Key header").
      await headerConfig(site, ['apitoken_header_name = Authorization'])
      expect(await statusBy(site, token, HEADERS)).toEqual({
        Authorization: 200,
        'X-CKAN-API-Key': 403,
        'X-Custom': 403,
        'X-Token': 403,
      })
      await headerConfig(site, [])
      expect(await statusBy(site, token, HEADERS)).toEqual({
        Authorization: 200,
        'X-CKAN-API-Key': 403,
        'X-Custom': 403,
        'X-Token': 403,
      })
      // An ini carried over from 2.10: the legacy key makes X-CKAN-API-Key the only header read.
      await headerConfig(site, ['apikey_header_name = X-CKAN-API-Key'])
      expect(await statusBy(site, token, HEADERS)).toEqual({
        Authorization: 403,
        'X-CKAN-API-Key': 200,
        'X-Custom': 403,
        'X-Token': 403,
      })
      // Both set: apitoken_header_name wins (the legacy key only fills an unset option).
      await headerConfig(site, ['apikey_header_name = X-CKAN-API-Key', 'apitoken_header_name = X-Token'])
      expect(await statusBy(site, token, HEADERS)).toEqual({
        Authorization: 403,
        'X-CKAN-API-Key': 403,
        'X-Custom': 403,
        'X-Token': 200,
      })
      // 2.10+ keep the case of option names: APITOKEN_HEADER_NAME is another option.
      await headerConfig(site, ['APITOKEN_HEADER_NAME = X-Token'])
      expect(await statusBy(site, token, ['Authorization', 'X-Token'])).toEqual({Authorization: 200, 'X-Token': 403})
    })

    it('2.11 with ckanext-envvars: CKAN___APITOKEN_HEADER_NAME beats the ini', async () => {
      const site = await startTestSite({
        env: {...process.env, CKAN___APITOKEN_HEADER_NAME: 'X-Custom'},
        envvars: true,
        users: 5,
        version: '2.11',
      })
      const token = site.adminCredential.reveal()
      expect(await statusBy(site, token, ['Authorization', 'X-Custom'])).toEqual({Authorization: 403, 'X-Custom': 200})
    })
  })
})
