import {readdirSync, readFileSync} from 'node:fs'
import pg from 'pg'
import {describe, expect, it} from 'vitest'

import {decodeJwtPayload, signJwt} from '../../src/lib/site/jwt.js'
import type {CkanVersion} from '../../src/lib/site/ckan-version.js'
import {Secret} from '../../src/lib/secret.js'
import {startTestSite, type TestSite} from '../helpers/test-site.js'

/**
 * Replays every exchange recorded from real CKAN 2.9.11, 2.10.10 and 2.11.5
 * (/work/shared/ckan-reference/transcript-*.md) against the emulator of the same version, in file
 * order on one site per version, and compares status, Content-Type, `success`, `help`, the
 * error's `__type` and message (whole error dict for validation errors, whole body for 400s) and
 * the shape of `result` (keys and JSON types, recursively).
 *
 * Credential mapping (recorded credential → equivalent credential of the test site, by role):
 * - sysadmin legacy key `806824d7-…` (2.9), sysadmin JWT `…chRd-gF5yo` (2.10) / `…0ksINBq5go`
 *   (2.11) → the site's `admin` credential (legacy key on 2.9, token on 2.10+), also behind
 *   `Bearer ` where the recording has it;
 * - alice's legacy key (`efecc65e-…` on 2.9, `11111111-2222-3333-4444-555555555555` on 2.10+) →
 *   the same value, set as alice's `user.apikey` (a seeded user `alice`, alice@example.org);
 * - "JWT signed with wrong secret" `…wtMTIzNDU2` → a JWT for an existing jti signed with another secret;
 * - `not-a-real-token` → itself;
 * - every token a recorded response returned (alice's, bob's) → the token the emulator returned
 *   in the same exchange (matched by the last 10 characters the transcript keeps), and its jti
 *   (e.g. in api_token_revoke bodies) → the emulator token's jti;
 * - bob's user id (api_token_create by id) → the id the emulator's user_create returned.
 * 2.9 seeds: a token `admin-jwt` for admin, used once (the recording lists one), and
 * ckan.auth.create_default_api_keys = true (the recorded site gave bob a key).
 */

const REFERENCE = process.env.CKAN_REFERENCE_DIR ?? '/work/shared/ckan-reference'

type Recorded = {body: string; contentType: string | undefined; status: number}
type Exchange = {
  request: {body: string; headers: Array<[string, string]>; method: string; path: string}
  response: Recorded
  title: string
}

function parseHttp(block: string): {body: string; first: string; headers: Array<[string, string]>} {
  const lines = block.split('\n')
  const first = lines.shift()!
  const headers: Array<[string, string]> = []
  while (lines.length > 0 && lines[0] !== '') {
    const line = lines.shift()!
    const colon = line.indexOf(':')
    headers.push([line.slice(0, colon).trim(), line.slice(colon + 1).trim()])
  }
  return {body: lines.join('\n').trim(), first, headers}
}

function parseTranscript(text: string): Exchange[] {
  const exchanges: Exchange[] = []
  for (const section of text.split(/^### /m).slice(1)) {
    const title = section.split('\n')[0]!.trim()
    const blocks = [...section.matchAll(/```http\n([\s\S]*?)\n```/g)].map((match) => match[1]!)
    expect(blocks, title).toHaveLength(2)
    const request = parseHttp(blocks[0]!)
    const response = parseHttp(blocks[1]!)
    const [method, path] = request.first.split(' ') as [string, string]
    exchanges.push({
      request: {body: request.body, headers: request.headers, method, path},
      response: {
        body: response.body,
        contentType: response.headers.find(([name]) => name.toLowerCase() === 'content-type')?.[1],
        status: Number(response.first.split(' ')[1]),
      },
      title,
    })
  }
  return exchanges
}

function transcripts(version: CkanVersion): Array<{exchanges: Exchange[]; file: string}> {
  const tag = version.replace('.', '')
  return readdirSync(REFERENCE)
    .filter((file) => file === `transcript-ckan${tag}.md` || file.startsWith(`transcript-ckan${tag}-`))
    .sort((a, b) => (a === `transcript-ckan${tag}.md` ? -1 : b === `transcript-ckan${tag}.md` ? 1 : a.localeCompare(b)))
    .map((file) => ({exchanges: parseTranscript(readFileSync(`${REFERENCE}/${file}`, 'utf8')), file}))
}

/** The JSON shape of a value: types instead of values, recursively (arrays by their first item). */
function shape(value: unknown): unknown {
  if (value === null) return 'null'
  if (Array.isArray(value)) return value.length === 0 ? [] : [shape(value[0])]
  if (typeof value === 'object')
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, shape(item)]))
  return typeof value
}

function sameArrayShape(actual: unknown, recorded: unknown): [unknown, unknown] {
  // An empty list and a list of one item are both "a list" when the site's data differ.
  if (Array.isArray(actual) && Array.isArray(recorded) && (actual.length === 0 || recorded.length === 0))
    return [[], []]
  return [shape(actual), shape(recorded)]
}

const ALICE_KEY: Record<CkanVersion, string> = {
  '2.10': '11111111-2222-3333-4444-555555555555',
  '2.11': '11111111-2222-3333-4444-555555555555',
  '2.9': 'efecc65e-a4ed-428c-877d-e68c2ad99b4c',
}
const ADMIN_RECORDED: Record<CkanVersion, {full?: string; suffix?: string}> = {
  '2.10': {suffix: 'chRd-gF5yo'},
  '2.11': {suffix: '0ksINBq5go'},
  '2.9': {full: '806824d7-f885-4b31-a312-c4bd4508a5d6'},
}
const WRONG_SECRET_SUFFIX = 'wtMTIzNDU2'

async function prepareSite(site: TestSite, version: CkanVersion): Promise<void> {
  const client = new pg.Client({connectionString: site.databaseUrl})
  await client.connect()
  try {
    await client.query(
      `INSERT INTO "user" (id, name, email, apikey, created, password, state, sysadmin)
       VALUES ('0a11ce00-0000-4000-a000-000000000001', 'alice', 'alice@example.org', $1, timestamp '2026-01-02 03:04:05.678901', 'x', 'active', false)`,
      [ALICE_KEY[version]],
    )
  } finally {
    await client.end()
  }
}

describe.each(['2.9', '2.10', '2.11'] as const)('replay of the recorded CKAN %s exchanges', (version) => {
  it('answers every exchange as real CKAN did', async () => {
    const site = await startTestSite({createDefaultApiKeys: version === '2.9', users: 20, version})
    await prepareSite(site, version)
    const admin = site.adminCredential.reveal()
    const bySuffix = new Map<string, string>()
    const byValue = new Map<string, string>()
    const recordedAdmin = ADMIN_RECORDED[version]
    if (recordedAdmin.full) byValue.set(recordedAdmin.full, admin)
    if (recordedAdmin.suffix) bySuffix.set(recordedAdmin.suffix, admin)
    const call = (action: string, credential: string, body: Record<string, unknown>) =>
      fetch(`${site.ckanUrl}/api/3/action/${action}`, {
        body: JSON.stringify(body),
        headers: {Authorization: credential, 'Content-Type': 'application/json'},
        method: 'POST',
      }).then((response) => response.json() as Promise<{result: {token: string}}>)
    const adminToken = (await call('api_token_create', admin, {name: 'admin-jwt', user: 'admin'})).result.token
    const adminJti = decodeJwtPayload(adminToken)!.jti
    await call('api_token_list', adminToken, {user: 'admin'}) // the recorded admin-jwt had been used
    bySuffix.set(
      WRONG_SECRET_SUFFIX,
      signJwt({jti: adminJti, iat: Math.floor(Date.now() / 1000) - 60}, new Secret('wrong-secret-123456'), '2.10+'),
    )

    const map = (text: string): string => {
      let result = text
      for (const [recorded, actual] of byValue) result = result.replaceAll(recorded, actual)
      return result.replaceAll(/eyJ[\w-]*…([\w-]{10})/g, (whole, suffix: string) => {
        const actual = bySuffix.get(suffix)
        if (!actual) throw new Error(`No credential of the test site plays the role of the recorded ${whole}`)
        return actual
      })
    }

    let replayed = 0
    for (const {exchanges, file} of transcripts(version)) {
      for (const exchange of exchanges) {
        const label = `${file}: ${exchange.title}`
        const headers: Record<string, string> = {}
        for (const [name, value] of exchange.request.headers) headers[name] = map(value)
        const response = await fetch(`${site.ckanUrl}${map(exchange.request.path)}`, {
          body: exchange.request.method === 'POST' ? map(exchange.request.body) : undefined,
          headers,
          method: exchange.request.method,
        })
        const text = await response.text()
        expect(response.status, label).toBe(exchange.response.status)
        expect(response.headers.get('content-type'), label).toBe(exchange.response.contentType)
        const recorded = JSON.parse(exchange.response.body) as unknown
        const actual = JSON.parse(text) as unknown
        replayed++
        if (typeof recorded === 'string') {
          expect(actual, label).toBe(recorded)
          continue
        }
        const want = recorded as {error?: Record<string, unknown>; help: string; result?: unknown; success: boolean}
        const got = actual as typeof want
        expect(got.success, label).toBe(want.success)
        expect(got.help, label).toBe(want.help.replace(/^http:\/\/127\.0\.0\.1:\d+/, site.ckanUrl))
        if (want.error) {
          if (want.error.__type === 'Validation Error') expect(got.error, label).toEqual(want.error)
          else expect({__type: got.error?.__type, message: got.error?.message}, label).toEqual(want.error)
          continue
        }
        const [actualShape, recordedShape] = sameArrayShape(got.result, want.result)
        expect(actualShape, label).toEqual(recordedShape)
        // Learn the tokens, jtis and ids this exchange produced, for the exchanges that use them.
        const wantToken = (want.result as {token?: string} | null)?.token
        const gotToken = (got.result as {token?: string} | null)?.token
        if (wantToken && gotToken) {
          bySuffix.set(wantToken.slice(-10), gotToken)
          byValue.set(decodeJwtPayload(wantToken)!.jti, decodeJwtPayload(gotToken)!.jti)
        }
        if (exchange.request.path.includes('user_create'))
          byValue.set((want.result as {id: string}).id, (got.result as {id: string}).id)
      }
    }
    expect(replayed).toBeGreaterThanOrEqual(version === '2.9' ? 37 : 41)
  })
})
