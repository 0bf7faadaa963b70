import {
  type ConcurrencyOptions,
  type ConcurrencyReport,
  createLimiter,
  runUnderLimit,
  takeFrom,
} from '../ckan/adaptive-limit.js'
import {CkanApiClient, CkanApiError} from '../ckan/ckan-api-client.js'
import {readCkanIni} from '../ckan/ckan-ini.js'
import {chooseDatabaseUrl} from '../ckan/ckan-settings.js'
import {readLegacyKeys} from '../ckan/user-selection.js'
import {openCkanDatabase} from '../db/ckan-database.js'
import {describeError, MigrateError} from '../errors.js'
import {type CsvColumn, writeCsvReport} from '../files/csv-report.js'
import {openRunFolder, type RunToken} from '../files/run-folder.js'
import type {Secret} from '../secret.js'

export const VERIFY_REPORT = 'verify-report.csv'

export type VerifyOptions = ConcurrencyOptions & {
  caCertPath?: string
  ckanIniPath?: string
  /** Defaults to the site of the run folder. */
  ckanUrl?: URL
  databaseUrl?: string
  env?: NodeJS.ProcessEnv
  fetch?: typeof fetch
  /** Also check each user's legacy key is refused (after the upgrade). Needs the database. */
  legacy: boolean
  out: string
  progress?: {advance(failed: number, limit?: number): void; start(total: number): void}
  signal?: AbortSignal
  timeoutMs?: number
}

export type VerifyResult = {
  /** The concurrency limit (settled on, highest) and the answer times seen, idle and under load. */
  concurrency: ConcurrencyReport
  counts: {failed: number; legacyStillAccepted: number; ok: number; revoked: number; tokens: number}
  failures: Array<{reason: string; user: string}>
  reportPath: string
  runId: string
}

type Row = {legacy: string; outcome: string; status: string; token: RunToken}

const COLUMNS: ReadonlyArray<CsvColumn<Row>> = [
  {header: 'user_id', value: (row) => row.token.userId},
  {header: 'name', value: (row) => row.token.userName},
  {header: 'source', value: (row) => row.token.source},
  {header: 'service', value: (row) => row.token.service},
  {header: 'token_name', value: (row) => row.token.tokenName},
  {header: 'token_id_fingerprint', value: (row) => row.token.jti.fingerprint()},
  {header: 'outcome', value: (row) => row.outcome},
  {header: 'status', value: (row) => row.status},
  {header: 'legacy_key', value: (row) => row.legacy},
]

/**
 * Proves each token of the run works, with that token alone: api_token_list for its own user
 * answers 200 only to that user (or a sysadmin), and 403 to anyone CKAN does not accept (CKAN
 * never answers 401). Records a `token-verified` journal event per token.
 */
export async function verifyTokens(options: VerifyOptions): Promise<VerifyResult> {
  const env = options.env ?? process.env
  const run = await openRunFolder(options.out, {
    create: false,
    site: options.ckanUrl ? {ckanUrl: options.ckanUrl.href} : undefined,
  })
  // Tokens `revoke` revoked (by full jti, revoked.jsonl) are rolled back on purpose: not checked.
  const all = await run.readTokens()
  const tokens = all.filter((token) => !token.revokedAt)
  const revoked = all.length - tokens.length
  let legacyKeys = new Map<string, Secret>()
  if (options.legacy) {
    const ini = options.ckanIniPath ? await readCkanIni(options.ckanIniPath, {env}) : undefined
    const database = await openCkanDatabase(chooseDatabaseUrl({databaseUrl: options.databaseUrl, ini}, env).url, {
      readOnly: false,
    })
    try {
      // READ ONLY per transaction, not per session: PGlite shares one session between its clients.
      await database.client.query('BEGIN TRANSACTION READ ONLY')
      legacyKeys = await readLegacyKeys(database.client, [...new Set(tokens.map((token) => token.userId))])
      await database.client.query('ROLLBACK')
    } finally {
      await database.close()
    }
  }
  const limiter = createLimiter(options)
  const client = new CkanApiClient({
    caCertPath: options.caCertPath,
    ckanUrl: options.ckanUrl ?? new URL(run.meta.site.ckanUrl),
    fetch: options.fetch,
    observer: limiter,
    timeoutMs: options.timeoutMs,
  })
  await run.lock('verify')
  const rows: Row[] = []
  const failures: VerifyResult['failures'] = []
  let failed = 0
  let legacyStillAccepted = 0
  try {
    await run.record({command: 'verify', dryRun: false, kind: 'run-started'})
    options.progress?.start(tokens.length)
    await runUnderLimit(
      limiter,
      takeFrom(tokens),
      async (token) => {
        const check = await probe(client.withCredential(token.token), token.userId)
        const ok = check.status === '200'
        await run.record({
          jtiFingerprint: token.jti.fingerprint(),
          kind: 'token-verified',
          ok,
          status: check.status,
          userId: token.userId,
          userName: token.userName,
        })
        let legacy = 'not checked'
        const key = legacyKeys.get(token.userId)
        if (options.legacy) {
          if (key) {
            const legacyCheck = await probe(client.withCredential(key), token.userId)
            legacy = legacyCheck.status === '200' ? 'still accepted' : 'refused'
            if (legacyCheck.status === '200') legacyStillAccepted += 1
          } else legacy = 'none'
        }
        const good = ok && legacy !== 'still accepted'
        if (!good) {
          failed += 1
          if (failures.length < 10)
            failures.push({reason: ok ? 'legacy key still accepted' : check.reason, user: token.userName})
        }
        rows.push({legacy, outcome: ok ? 'ok' : `not accepted: ${check.reason}`, status: check.status, token})
        options.progress?.advance(failed, limiter.limit)
      },
      {signal: options.signal},
    )
    const reportPath = run.file(VERIFY_REPORT)
    await writeCsvReport(reportPath, COLUMNS, rows)
    const counts = {
      failed,
      legacyStillAccepted,
      ok: rows.filter((row) => row.status === '200').length,
      revoked,
      tokens: tokens.length,
    }
    await run.record({command: 'verify', kind: 'run-finished', summary: counts})
    return {concurrency: limiter.report(), counts, failures, reportPath, runId: run.meta.runId}
  } finally {
    await run.unlock()
    await client.close()
  }
}

/** api_token_list for the user with one credential alone: '200', '403', or the failure. */
async function probe(client: CkanApiClient, userId: string): Promise<{reason: string; status: string}> {
  try {
    await client.listApiTokens(userId)
    return {reason: '', status: '200'}
  } catch (error) {
    if (error instanceof CkanApiError) return {reason: error.ckanMessage, status: String(error.status)}
    if (error instanceof MigrateError && error.exitCode !== 1) throw error
    return {reason: describeError(error), status: 'error'}
  }
}
