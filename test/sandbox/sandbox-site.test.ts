import {stat} from 'node:fs/promises'
import pg from 'pg'
import {describe, expect, it} from 'vitest'

import {readCkanIni} from '../../src/lib/site/ckan-ini.js'
import {decodeJwtPayload} from '../../src/lib/site/jwt.js'
import {CKAN_RELEASES} from '../../src/lib/site/ckan-version.js'
import {upgradeSandboxDatabase} from '../../src/sandbox/sandbox-site.js'
import {startTestSite} from '../helpers/test-site.js'

async function call(url: string, action: string, credential: string | undefined, body?: Record<string, unknown>) {
  const headers: Record<string, string> = {}
  if (credential) headers.Authorization = credential
  if (body) headers['Content-Type'] = 'application/json'
  const response = await fetch(`${url}/api/3/action/${action}`, {
    body: body ? JSON.stringify(body) : undefined,
    headers,
    method: body ? 'POST' : 'GET',
  })
  return {
    json: (await response.json()) as {error?: Record<string, unknown>; result?: unknown; success?: boolean},
    status: response.status,
  }
}

describe('startSandboxSite', () => {
  for (const version of ['2.9', '2.10', '2.11'] as const) {
    it(`serves a seeded ${version} site whose admin credential file works`, async () => {
      const site = await startTestSite({version, users: 30})
      expect((await stat(site.apiKeyFile)).mode & 0o777).toBe(0o600)
      expect((await stat(site.ckanIni)).mode & 0o777).toBe(0o600)
      const status = await call(site.ckanUrl, 'status_show', undefined)
      expect(status.json.result).toMatchObject({ckan_version: CKAN_RELEASES[version], site_url: site.ckanUrl})
      expect((status.json.result as {extensions: string[]}).extensions).toEqual(
        expect.arrayContaining(['xloader', 'datapusher']),
      )
      const credential = site.adminCredential.reveal()
      const created = await call(site.ckanUrl, 'api_token_create', credential, {name: 'smoke', user: 'admin'})
      expect(created.status).toBe(200)
      const token = (created.json.result as {token: string}).token
      expect(token.startsWith(version === '2.9' ? 'eyJ0eXAiOiJKV1Qi' : 'eyJhbGciOiJIUzI1NiIs')).toBe(true)
      const listed = await call(site.ckanUrl, 'api_token_list', token, {user: 'admin', user_id: 'admin'})
      expect(listed.status).toBe(200)
      expect((listed.json.result as Array<{id: string}>).map((row) => row.id)).toContain(decodeJwtPayload(token)?.jti)

      const ini = await readCkanIni(site.ckanIni, {caseRule: version === '2.9' ? 'lowercase' : 'preserve'})
      expect(ini.get('ckan.site_url')).toBe(site.ckanUrl)
      expect(ini.get('sqlalchemy.url')).toBe(site.databaseUrl)
      expect(ini.duplicates).toEqual([])
      if (version === '2.9') {
        expect(ini.has('ckan.datapusher.api_token')).toBe(false)
        expect(ini.raw('api_token.jwt.encode.secret')).toMatch(/^string:[\w-]{25}$/)
      } else {
        expect(ini.get('ckan.datapusher.api_token')).toMatch(/^eyJ/)
      }
    })
  }

  it('leaves the api_token lines out for a site upgraded from 2.8, and tokens still work through the fallback', async () => {
    const site = await startTestSite({apiTokenLines: false, users: 20})
    const ini = await readCkanIni(site.ckanIni)
    expect(ini.has('api_token.jwt.encode.secret')).toBe(false)
    const created = await call(site.ckanUrl, 'api_token_create', site.adminCredential.reveal(), {
      name: 'x',
      user: 'admin',
    })
    const token = (created.json.result as {token: string}).token
    expect((await call(site.ckanUrl, 'api_token_list', token, {user: 'admin'})).status).toBe(200)
  })

  it('upgrades a 2.9 database to 2.10, and the unique email index fails on duplicate active emails as CKAN 102 does', async () => {
    const site = await startTestSite({users: 30})
    const client = new pg.Client({connectionString: site.databaseUrl})
    await client.connect()
    try {
      await client.query(
        `UPDATE "user" SET email = 'twin@example.org', state = 'active' WHERE name IN ('user-1', 'admin')`,
      )
      await expect(upgradeSandboxDatabase(client, '2.10')).rejects.toThrow(/idx_only_one_active_email|duplicate/i)
      const columns = await client.query(
        `SELECT 1 FROM information_schema.columns WHERE table_name = 'user' AND column_name = 'last_active'`,
      )
      expect(columns.rowCount).toBe(0)
      await client.query(`UPDATE "user" SET email = 'admin@example.org' WHERE name = 'admin'`)
      await client.query(`UPDATE "user" SET email = 'dedup-' || id || '@example.org' WHERE email LIKE 'shared-%'`)
      await upgradeSandboxDatabase(client, '2.10')
      expect((await client.query('SELECT version_num FROM alembic_version')).rows[0].version_num).toBe('9f33a0280c51')
    } finally {
      await client.end()
    }
    // CKAN 2.10 refuses to start with DataPusher and no ckan.datapusher.api_token, as the 2.9 ini has.
    await expect(site.emulator.setVersion('2.10')).rejects.toThrow(/ckan\.datapusher\.api_token/)
  })
})
