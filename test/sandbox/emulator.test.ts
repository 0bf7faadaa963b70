import pg from 'pg'
import {describe, expect, it} from 'vitest'

import {readCkanIni} from '../../src/lib/site/ckan-ini.js'
import {resolveJwtSecret} from '../../src/lib/site/ckan-settings.js'
import {decodeJwtPayload, signJwt} from '../../src/lib/site/jwt.js'
import {upgradeSandboxDatabase} from '../../src/sandbox/sandbox-site.js'
import {querySite as sql} from '../helpers/site-commands.js'
import {startTestSite, type TestSite} from '../helpers/test-site.js'

type Answer = {
  body: unknown
  json: {error?: Record<string, unknown>; result?: unknown; success?: boolean}
  status: number
}

async function call(
  site: TestSite,
  action: string,
  options: {body?: Record<string, unknown>; headers?: Record<string, string>; credential?: string} = {},
): Promise<Answer> {
  const headers: Record<string, string> = {...options.headers}
  if (options.credential) headers.Authorization = options.credential
  if (options.body) headers['Content-Type'] = 'application/json'
  const response = await fetch(`${site.ckanUrl}/api/3/action/${action}`, {
    body: options.body ? JSON.stringify(options.body) : undefined,
    headers,
    method: options.body ? 'POST' : 'GET',
  })
  const body = (await response.json()) as Answer['json']
  return {body, json: body, status: response.status}
}

async function tokenFor(site: TestSite, user: string, extra: Record<string, unknown> = {}): Promise<string> {
  const answer = await call(site, 'api_token_create', {
    body: {name: 'test', user, ...extra},
    credential: site.adminCredential.reveal(),
  })
  expect(answer.status).toBe(200)
  return (answer.json.result as {token: string}).token
}

/** Whose credential is this? api_token_list for `user` succeeds only for that user or a sysadmin. */
async function canList(site: TestSite, user: string, headers: Record<string, string>): Promise<number> {
  return (await call(site, 'api_token_list', {body: {user, user_id: user}, headers})).status
}

describe('CKAN emulator', () => {
  it('2.9: the legacy-key header wins over Authorization, and pending users are identified', async () => {
    const site = await startTestSite({users: 20})
    const [pending] = await sql<{name: string}>(
      site,
      `UPDATE "user" SET state = 'pending' WHERE name = 'user-1' RETURNING name`,
    )
    const [alice] = await sql<{apikey: string}>(
      site,
      `SELECT apikey FROM "user" WHERE apikey IS NOT NULL AND NOT sysadmin AND state = 'active' AND name LIKE 'user-%' LIMIT 1`,
    )
    const adminToken = await tokenFor(site, 'admin')
    // X-CKAN-API-Key (a non-sysadmin's key) beats Authorization (the admin's token): not allowed to list admin's tokens.
    expect(await canList(site, 'admin', {Authorization: adminToken, 'X-CKAN-API-Key': alice!.apikey})).toBe(403)
    expect(await canList(site, 'admin', {Authorization: adminToken})).toBe(200)
    const pendingToken = await tokenFor(site, pending!.name)
    expect(await canList(site, pending!.name, {Authorization: pendingToken})).toBe(200)
    // A deleted user's key still identifies it, but every check refuses it.
    await sql(site, `UPDATE "user" SET state = 'deleted' WHERE name = $1`, [pending!.name])
    const denied = await call(site, 'api_token_list', {body: {user: pending!.name}, credential: pendingToken})
    expect(denied.status).toBe(403)
    expect(denied.json.error).toEqual({__type: 'Authorization Error', message: 'Access denied'})
    // api_token.nbytes = 60 on a 2.9 generated ini: 80-character jtis.
    expect(decodeJwtPayload(adminToken)!.jti).toHaveLength(80)
  })

  it('2.10: pending users act as anonymous; last_access on every use, last_active once per interval', async () => {
    const site = await startTestSite({users: 20, version: '2.10'})
    await sql(site, `UPDATE "user" SET state = 'pending' WHERE name = 'user-1'`)
    const pendingToken = await tokenFor(site, 'user-1')
    expect(await canList(site, 'user-1', {Authorization: pendingToken})).toBe(403)
    const token = await tokenFor(site, 'admin')
    expect(decodeJwtPayload(token)!.jti).toHaveLength(43)
    const jti = decodeJwtPayload(token)!.jti
    await call(site, 'status_show', {credential: token})
    const [first] = await sql<{last_access: Date; last_active: Date}>(
      site,
      `SELECT t.last_access, u.last_active FROM api_token t JOIN "user" u ON u.id = t.user_id WHERE t.id = $1`,
      [jti],
    )
    expect(first!.last_access).not.toBeNull()
    expect(first!.last_active).not.toBeNull()
    await call(site, 'status_show', {credential: token})
    const [second] = await sql<{last_access: Date; last_active: Date}>(
      site,
      `SELECT t.last_access, u.last_active FROM api_token t JOIN "user" u ON u.id = t.user_id WHERE t.id = $1`,
      [jti],
    )
    expect(second!.last_access.getTime()).toBeGreaterThan(first!.last_access.getTime())
    expect(second!.last_active.getTime()).toBe(first!.last_active.getTime())
  })

  it('2.11: reads only apitoken_header_name (falling back to the legacy apikey_header_name setting)', async () => {
    const site = await startTestSite({
      settings: {apitoken_header_name: null, apikey_header_name: 'X-Site-Token'},
      users: 20,
      version: '2.11',
    })
    const admin = site.adminCredential.reveal()
    expect(await canList(site, 'admin', {Authorization: admin})).toBe(403)
    expect(await canList(site, 'admin', {'X-CKAN-API-Key': admin})).toBe(403)
    expect(await canList(site, 'admin', {'X-Site-Token': admin})).toBe(200)
    expect(await canList(site, 'admin', {'X-Site-Token': `Bearer ${admin}`})).toBe(403)
  })

  it('expire_api_token: expires_in and unit are required, the token carries exp, an expired token is anonymous', async () => {
    const site = await startTestSite({expireApiToken: true, users: 20, version: '2.10'})
    const admin = site.adminCredential.reveal()
    const missing = await call(site, 'api_token_create', {body: {name: 'x', user: 'admin'}, credential: admin})
    expect(missing.status).toBe(409)
    expect(missing.json.error).toEqual({
      __type: 'Validation Error',
      expires_in: ['Missing value'],
      unit: ['Missing value'],
    })
    const bad = await call(site, 'api_token_create', {
      body: {expires_in: -1, name: 'x', unit: 'day', user: 'admin'},
      credential: admin,
    })
    expect(bad.json.error).toEqual({
      __type: 'Validation Error',
      expires_in: ['Must be a positive integer'],
      unit: ['Invalid integer'], // is_positive_integer calls int_validator first
    })
    const token = await tokenFor(site, 'admin', {expires_in: 2, unit: 86_400})
    const claims = decodeJwtPayload(token)!
    // exp comes from the clock a moment after iat, as in CKAN: a second may tick in between.
    expect(claims.exp! - claims.iat).toBeGreaterThanOrEqual(2 * 86_400)
    expect(claims.exp! - claims.iat).toBeLessThanOrEqual(2 * 86_400 + 1)
    expect(await canList(site, 'admin', {Authorization: token})).toBe(200)
    // The same jti with an exp in the past, signed with the site's own secret: anonymous.
    const ini = await readCkanIni(site.ckanIni, {caseRule: 'preserve'})
    const secret = (await resolveJwtSecret(ini, '2.10', 'encode')).secret
    const expired = signJwt({exp: claims.iat - 1, iat: claims.iat - 100, jti: claims.jti}, secret, '2.10+')
    expect(await canList(site, 'admin', {Authorization: expired})).toBe(403)
  })

  it('signs with the encode secret and verifies with the decode secret, so drifted secrets break tokens as in CKAN', async () => {
    // 2.9, so the admin's legacy key still works and can mint a token with the encode secret.
    const site = await startTestSite({settings: {'api_token.jwt.decode.secret': 'string:something-else'}, users: 20})
    const token = await tokenFor(site, 'admin')
    expect(await canList(site, 'admin', {Authorization: token})).toBe(403)
    expect(await canList(site, 'admin', {Authorization: site.adminCredential.reveal()})).toBe(200)
  })

  it('answers get_site_user, user_list, form-encoded bodies and revoke-by-token as CKAN does', async () => {
    const site = await startTestSite({users: 30})
    const admin = site.adminCredential.reveal()
    const siteUser = await call(site, 'get_site_user', {credential: admin})
    expect(siteUser.json.result).toEqual({apikey: expect.stringMatching(/^[\da-f-]{36}$/), name: site.siteUserName})
    const [someone] = await sql<{apikey: string; name: string}>(
      site,
      `SELECT name, apikey FROM "user" WHERE name LIKE 'user-%' AND apikey ~ '^[0-9a-f-]{36}$' AND state = 'active' AND NOT sysadmin LIMIT 1`,
    )
    const refused = await call(site, 'get_site_user', {credential: someone!.apikey})
    expect(refused.json.error).toEqual({
      __type: 'Authorization Error',
      message: 'Access denied: Only internal services allowed to use this action',
    })

    const asAdmin = (await call(site, 'user_list', {credential: admin})).json.result as Array<Record<string, unknown>>
    const anonymous = (await call(site, 'user_list')).json.result as Array<Record<string, unknown>>
    const [counts] = await sql<{listed: string}>(
      site,
      `SELECT count(*) AS listed FROM "user" WHERE state != 'deleted' AND name != $1`,
      [site.siteUserName],
    )
    expect(asAdmin).toHaveLength(Number(counts!.listed))
    expect(asAdmin.some((user) => user.name === site.siteUserName)).toBe(false)
    expect(asAdmin.every((user) => 'apikey' in user && 'email' in user)).toBe(true)
    expect(anonymous.some((user) => 'apikey' in user || 'email' in user)).toBe(false)

    // A form body whose only key is JSON (value '') is parsed as JSON, as CKAN does.
    const form = await fetch(`${site.ckanUrl}/api/action/api_token_create`, {
      body: `${encodeURIComponent(JSON.stringify({name: 'form-json', user: someone!.name}))}=`,
      headers: {Authorization: admin, 'Content-Type': 'application/x-www-form-urlencoded'},
      method: 'POST',
    })
    expect(form.status).toBe(200)
    const token = ((await form.json()) as {result: {token: string}}).result.token
    // Someone else's token cannot be revoked by a non-sysadmin; its owner can, by the token itself.
    const adminOwn = await tokenFor(site, 'admin')
    const notYours = await call(site, 'api_token_revoke', {
      body: {jti: decodeJwtPayload(adminOwn)!.jti},
      credential: someone!.apikey,
    })
    expect(notYours.status).toBe(403)
    const revoked = await call(site, 'api_token_revoke', {body: {token}, credential: someone!.apikey})
    expect(revoked.json).toMatchObject({result: null, success: true})
    expect(await sql(site, 'SELECT 1 FROM api_token WHERE id = $1', [decodeJwtPayload(token)!.jti])).toHaveLength(0)
  })

  it('switches version at run time over the same database: a 2.9 token keeps working on 2.10, the legacy key stops', async () => {
    const site = await startTestSite({datapusher: false, users: 20, xloader: false})
    const key = site.adminCredential.reveal()
    const token = await tokenFor(site, 'admin')
    expect(token.startsWith('eyJ0eXAiOiJKV1Qi')).toBe(true)
    const client = new pg.Client({connectionString: site.databaseUrl})
    await client.connect()
    try {
      await upgradeSandboxDatabase(client, '2.10')
    } finally {
      await client.end()
    }
    await site.emulator.setVersion('2.10')
    expect(((await call(site, 'status_show')).json.result as {ckan_version: string}).ckan_version).toBe('2.10.10')
    expect(await canList(site, 'admin', {Authorization: key})).toBe(403)
    expect(await canList(site, 'admin', {Authorization: token})).toBe(200)
  })
})
