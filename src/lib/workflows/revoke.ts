import {
  type ConcurrencyOptions,
  type ConcurrencyReport,
  createLimiter,
  runUnderLimit,
  takeFrom,
} from '../ckan/adaptive-limit.js'
import {CkanApiError} from '../ckan/ckan-api-client.js'
import {readCredential} from '../credential.js'
import {EXIT_CODES, MigrateError} from '../errors.js'
import {type CsvColumn, writeCsvReport} from '../files/csv-report.js'
import {openRunFolder, type RunToken} from '../files/run-folder.js'
import {preflightSite} from '../tokens/site-preflight.js'

export const REVOKE_REPORT = 'revoke-report.csv'

export type RevokeOptions = ConcurrencyOptions & {
  apiKeyFile?: string
  caCertPath?: string
  /** Defaults to the site of the run folder. */
  ckanUrl?: URL
  dryRun: boolean
  env?: NodeJS.ProcessEnv
  fetch?: typeof fetch
  /** Told about things worth knowing that are not errors (e.g. a key file others can read). */
  onWarning?: (message: string) => void
  out: string
  progress?: {advance(failed: number, limit?: number): void; start(total: number): void}
  signal?: AbortSignal
  timeoutMs?: number
  /** Only the tokens of these users (names or ids). */
  users?: string[]
}

export type RevokeResult = {
  /** The concurrency limit (settled on, highest) and the answer times seen, idle and under load. */
  concurrency: ConcurrencyReport
  counts: {alreadyRevoked: number; failed: number; planned: number; revoked: number; tokens: number}
  dryRun: boolean
  failures: Array<{reason: string; user: string}>
  reportPath: string | null
  runId: string
}

type Row = {outcome: string; token: RunToken}

const COLUMNS: ReadonlyArray<CsvColumn<Row>> = [
  {header: 'user_id', value: (row) => row.token.userId},
  {header: 'name', value: (row) => row.token.userName},
  {header: 'source', value: (row) => row.token.source},
  {header: 'service', value: (row) => row.token.service},
  {header: 'token_name', value: (row) => row.token.tokenName},
  {header: 'token_id_fingerprint', value: (row) => row.token.jti.fingerprint()},
  {header: 'outcome', value: (row) => row.outcome},
]

/**
 * Rollback: revokes the run's tokens (issue-tokens' and rewrite-config's) by jti through
 * api_token_revoke, with a sysadmin's credential. Idempotent: CKAN treats a sysadmin's revoke of
 * an unknown jti as success, so running it again is safe. Each revoke is journaled.
 */
export async function revokeTokens(options: RevokeOptions): Promise<RevokeResult> {
  const env = options.env ?? process.env
  const run = await openRunFolder(options.out, {
    create: false,
    site: options.ckanUrl ? {ckanUrl: options.ckanUrl.href} : undefined,
  })
  let tokens = await run.readTokens()
  if (options.users) {
    const wanted = new Set(options.users.map((name) => name.trim()).filter(Boolean))
    const known = new Set(tokens.flatMap((token) => [token.userId, token.userName]))
    const unknown = [...wanted].filter((name) => !known.has(name))
    if (unknown.length > 0) {
      throw new MigrateError(
        `${unknown.length} of the --users have no token in this run: ${unknown
          .slice(0, 5)
          .map((name) => JSON.stringify(name))
          .join(', ')}`,
        {
          exitCode: EXIT_CODES.badInput,
          suggestion: 'Name users (or ids) that issue-tokens gave a token in this run; see its report.',
        },
      )
    }
    tokens = tokens.filter((token) => wanted.has(token.userId) || wanted.has(token.userName))
  }
  const credential = await readCredential({env, file: options.apiKeyFile})
  if (credential.warning) options.onWarning?.(credential.warning)
  const limiter = createLimiter(options)
  const site = await preflightSite({
    caCertPath: options.caCertPath,
    ckanUrl: options.ckanUrl ?? new URL(run.meta.site.ckanUrl),
    credential,
    env,
    fetch: options.fetch,
    observer: limiter,
    timeoutMs: options.timeoutMs,
  })
  const {client} = site
  try {
    if (options.dryRun) {
      const planned = tokens.filter((token) => !token.revokedAt).length
      return {
        concurrency: limiter.report(),
        counts: {alreadyRevoked: tokens.length - planned, failed: 0, planned, revoked: 0, tokens: tokens.length},
        dryRun: true,
        failures: [],
        reportPath: null,
        runId: run.meta.runId,
      }
    }
    await run.lock('revoke')
    try {
      await run.record({command: 'revoke', dryRun: false, kind: 'run-started'})
      const rows: Row[] = []
      const failures: RevokeResult['failures'] = []
      let failed = 0
      let alreadyRevoked = 0
      options.progress?.start(tokens.length)
      // Already revoked ones need no call: they never take a slot.
      for (const token of tokens) {
        if (!token.revokedAt) continue
        alreadyRevoked += 1
        rows.push({outcome: `already revoked ${token.revokedAt}`, token})
        options.progress?.advance(failed, limiter.limit)
      }
      await runUnderLimit(
        limiter,
        takeFrom(tokens.filter((token) => !token.revokedAt)),
        async (token) => {
          try {
            await client.revokeApiToken(token.jti)
            // By full jti (0600 revoked.jsonl) so verify, bundle and a resumed issue-tokens skip it; the journal has the fingerprint.
            await run.recordRevoked([token])
            await run.record({
              jtiFingerprint: token.jti.fingerprint(),
              kind: 'token-revoked',
              userId: token.userId,
              userName: token.userName,
            })
            rows.push({outcome: 'revoked', token})
          } catch (error) {
            if (!(error instanceof CkanApiError)) throw error
            failed += 1
            if (failures.length < 10) failures.push({reason: error.message, user: token.userName})
            await run.record({
              kind: 'user-failed',
              reason: error.message,
              userId: token.userId,
              userName: token.userName,
            })
            rows.push({outcome: `failed: ${error.message}`, token})
          }
          options.progress?.advance(failed, limiter.limit)
        },
        {signal: options.signal},
      )
      const reportPath = run.file(REVOKE_REPORT)
      await writeCsvReport(reportPath, COLUMNS, rows)
      const counts = {
        alreadyRevoked,
        failed,
        planned: 0,
        revoked: rows.length - failed - alreadyRevoked,
        tokens: tokens.length,
      }
      await run.record({command: 'revoke', kind: 'run-finished', summary: counts})
      return {concurrency: limiter.report(), counts, dryRun: false, failures, reportPath, runId: run.meta.runId}
    } finally {
      await run.unlock()
    }
  } finally {
    await client.close()
  }
}
