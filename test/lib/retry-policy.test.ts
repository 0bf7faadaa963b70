import {join} from 'node:path'
import {describe, expect, it} from 'vitest'

import {EXIT_CODES} from '../../src/lib/errors.js'
import {
  type AttemptFailure,
  DEFAULT_RETRY_POLICY,
  type Replay,
  retryDelayMs,
  retryPolicy,
} from '../../src/lib/site/retry-policy.js'
import type {IssueTokensResult} from '../../src/lib/workflows/issue-tokens.js'
import {runCliJson} from '../helpers/run-cli.js'
import {issueTokensArgs, querySite, tempDir} from '../helpers/site-commands.js'
import {startTestSite} from '../helpers/test-site.js'

const policy = retryPolicy()
const status = (code: number, retryAfter?: string): AttemptFailure => ({kind: 'status', retryAfter, status: code})
const network = (code: string | undefined): AttemptFailure => ({code, kind: 'network'})
const retried = (replay: Replay, failure: AttemptFailure) => retryDelayMs(policy, replay, failure, 1) !== undefined

describe('the retry policy', () => {
  it('retries a safe call after 408, 429 and 5xx, timeouts and lost connections, but not TLS or DNS failures', () => {
    for (const code of [408, 429, 500, 502, 503, 504]) expect(retried('safe', status(code))).toBe(true)
    for (const code of [400, 403, 404, 409, 413, 501]) expect(retried('safe', status(code))).toBe(false)
    expect(retried('safe', {kind: 'timeout'})).toBe(true)
    for (const code of ['ECONNRESET', 'UND_ERR_SOCKET', 'ECONNREFUSED', undefined])
      expect(retried('safe', network(code))).toBe(true)
    for (const code of ['ENOTFOUND', 'EAI_AGAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'ERR_TLS_CERT_ALTNAME_INVALID'])
      expect(retried('safe', network(code))).toBe(false)
  })

  it('retries a write that must not be replayed only when CKAN surely did nothing (429, refused)', () => {
    expect(retried('before-send', status(429))).toBe(true)
    for (const code of [408, 500, 502, 503, 504]) expect(retried('before-send', status(code))).toBe(false)
    expect(retried('before-send', {kind: 'timeout'})).toBe(false)
    for (const code of ['ECONNREFUSED', 'UND_ERR_CONNECT_TIMEOUT'])
      expect(retried('before-send', network(code))).toBe(true)
    for (const code of ['ECONNRESET', 'UND_ERR_SOCKET', undefined])
      expect(retried('before-send', network(code))).toBe(false)
  })

  it('waits what Retry-After says (at most two minutes), else a jittered backoff of at most 10 s', () => {
    expect(retryDelayMs(policy, 'before-send', status(429, '7'), 1)).toBe(7000)
    expect(retryDelayMs(policy, 'safe', status(503, '3'), 1)).toBe(3000)
    expect(retryDelayMs(policy, 'safe', status(429, '3600'), 1)).toBe(120_000)
    const date = new Date(Date.now() + 60_000).toUTCString()
    expect(retryDelayMs(policy, 'safe', status(429, date), 1)).toBeGreaterThan(50_000)
    for (let attempt = 1; attempt <= 4; attempt += 1) {
      const delay = retryDelayMs(retryPolicy({retries: 10}), 'safe', status(500, '5'), attempt)!
      expect(delay).toBeGreaterThanOrEqual(0)
      expect(delay).toBeLessThanOrEqual(Math.min(10_000, 300 * 2 ** (attempt - 1)))
    }
    expect(retryDelayMs(policy, 'safe', status(429, 'soon'), 1)).toBeLessThanOrEqual(300)
  })

  it('gives up after the attempts of one call, one number for calls and users; --timeout bounds the call', () => {
    expect(DEFAULT_RETRY_POLICY.retries).toBe(DEFAULT_RETRY_POLICY.attempts - 1)
    expect(retryDelayMs(policy, 'safe', status(503), DEFAULT_RETRY_POLICY.retries)).toBeDefined()
    expect(retryDelayMs(policy, 'safe', status(503), DEFAULT_RETRY_POLICY.retries + 1)).toBeUndefined()
    expect(retryDelayMs(retryPolicy({retries: 0}), 'safe', status(503), 1)).toBeUndefined()
    expect(retryPolicy({timeoutMs: 1000}).callTimeoutMs).toBe(1000)
    expect(retryPolicy().callTimeoutMs).toBe(30_000)
  })
})

describe('the attempt budget of issue-tokens', () => {
  it('sends api_token_create at most `attempts` times per user, whoever retries', async () => {
    const site = await startTestSite({users: 10, version: '2.10'})
    const [user] = await querySite<{name: string}>(
      site,
      `SELECT name FROM "user" WHERE state = 'active' AND NOT sysadmin AND name <> $1 ORDER BY name LIMIT 1`,
      [site.siteUserName],
    )
    // Every create is rate-limited (CKAN did nothing, so each may be sent again at once).
    site.emulator.setFaults({actions: ['api_token_create'], retryAfterSeconds: 0, status429: 1})
    const out = join(await tempDir('ckan-migrate-budget-'), 'run')
    const run = await runCliJson<IssueTokensResult>(issueTokensArgs(site, out, '--users', user!.name))
    expect(run.exitCode).toBe(EXIT_CODES.partialFailure)
    expect(site.emulator.stats().actions.api_token_create).toBe(DEFAULT_RETRY_POLICY.attempts)
    expect(run.json.result?.counts).toMatchObject({failed: 1, issued: 0})
    expect(run.json.result?.failures[0]?.reason).toMatch(
      /^gave up after 8 attempts: CKAN rejected api_token_create \(HTTP 429\)/,
    )
  }, 120_000)
})
