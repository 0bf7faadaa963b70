import {
  type ConcurrencyOptions,
  type ConcurrencyReport,
  createLimiter,
  runUnderLimit,
  takeFrom,
} from '../site/adaptive-limit.js'
import type {Progress} from '../progress.js'
import {resolveSiteDatabase} from '../site/site-database.js'
import {CkanApiClient, CkanApiError, CkanUnreachableError} from '../site/ckan-api-client.js'
import {readLegacyKeys} from '../site/user-selection.js'
import {openCkanDatabase, readOnlyTransaction} from '../site/ckan-database.js'
import {describeError, MigrateError} from '../errors.js'
import {type CsvColumn, writeCsvReport} from '../fs/csv-report.js'
import {runTokenColumns} from '../run/run-tokens.js'
import {openRunFolder, type RunToken} from '../run/run-folder.js'
import {confirmSiteElsewhere} from '../run/site-identity.js'
import type {Secret} from '../secret.js'
import {readCkanIni} from '../site/ckan-ini.js'
import {iniCaseRule, versionOfRelease} from '../site/ckan-version.js'
import {refuseOverriddenFlag} from '../site/site-preflight.js'
import {
  chooseTokenHeader,
  configuredTokenHeader,
  type HeaderChoice,
  headerMismatchWarning,
} from '../site/token-header.js'

export const VERIFY_REPORT = 'verify-report.csv'

export type VerifyOptions = ConcurrencyOptions & {
  /** --allow-other-url: --ckan-url may be another address of the run's site (site-identity.ts). */
  allowOtherUrl?: boolean
  caCertPath?: string
  ckanIniPath?: string
  /** Defaults to the site of the run folder. */
  ckanUrl?: URL
  databaseUrl?: string
  env?: NodeJS.ProcessEnv
  /** --header-name (token-header.ts). */
  headerName?: string
  /** Also check each user's legacy key is refused (after the upgrade). Needs the database. */
  legacy: boolean
  out: string
  progress?: Progress
  signal?: AbortSignal
  timeoutMs?: number
}

export type VerifyResult = {
  /** The concurrency limit (settled on, highest) and the answer times seen, idle and under load. */
  concurrency: ConcurrencyReport
  /**
   * `failed`: tokens CKAN refused (or legacy keys it still accepts); `unchecked`: tokens whose
   * check never got an answer from CKAN itself (a 5xx, 429 or network error that outlasted the
   * retries, or an interrupt): nothing is known about them, they are neither ok nor failed.
   */
  counts: {failed: number; legacyStillAccepted: number; ok: number; revoked: number; tokens: number; unchecked: number}
  failures: Array<{reason: string; user: string}>
  /** The header the tokens were sent in. */
  headerName: string
  /** Up to ten tokens that could not be checked, with why. */
  unchecked: Array<{reason: string; user: string}>
  reportPath: string
  runId: string
  warnings: string[]
}

type Row = {legacy: string; outcome: string; status: string; token: RunToken}

const COLUMNS: ReadonlyArray<CsvColumn<Row>> = [
  ...runTokenColumns<Row>(),
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
    allowOtherUrl: options.allowOtherUrl,
    create: false,
    site: options.ckanUrl ? {ckanUrl: options.ckanUrl.href} : undefined,
  })
  // Tokens `revoke` revoked (by full jti, revoked.jsonl) are rolled back on purpose: not checked.
  const all = await run.readTokens()
  const tokens = all.filter((token) => !token.revokedAt)
  const revoked = all.length - tokens.length
  let legacyKeys = new Map<string, Secret>()
  if (options.legacy) {
    const {url} = await resolveSiteDatabase({ckanIniPath: options.ckanIniPath, databaseUrl: options.databaseUrl, env})
    const database = await openCkanDatabase(url, {})
    try {
      legacyKeys = await readOnlyTransaction(database.client, () =>
        readLegacyKeys(database.client, [...new Set(tokens.map((token) => token.userId))]),
      )
    } finally {
      await database.close()
    }
  }
  const limiter = createLimiter(options)
  const anonymous = new CkanApiClient({
    caCertPath: options.caCertPath,
    ckanUrl: options.ckanUrl ?? new URL(run.meta.site.ckanUrl),
    observer: limiter,
    signal: options.signal,
    timeoutMs: options.timeoutMs,
  })
  const warnings: string[] = []
  let choice: HeaderChoice | undefined
  try {
    choice = tokens[0]
      ? await settleHeader(anonymous, tokens.slice(0, HEADER_SAMPLES), options, await run.tokenHeader())
      : undefined
  } catch (error) {
    await anonymous.close()
    throw error
  }
  const client = choice ? anonymous.withHeader(choice.header.name) : anonymous
  const mismatch = choice && headerMismatchWarning(choice)
  if (mismatch) warnings.push(mismatch)
  await run.lock('verify')
  const rows: Row[] = []
  const failures: VerifyResult['failures'] = []
  const unchecked: VerifyResult['unchecked'] = []
  let uncheckedCount = 0
  let failed = 0
  // Counted per user: a user holding several of the run's tokens (the site user's service tokens) has one key.
  const legacyStillAccepted = new Set<string>()
  try {
    await confirmSiteElsewhere({command: 'verify', record: true, run, tokenAccepted: choice?.accepted, tokens})
    await run.record({command: 'verify', dryRun: false, kind: 'run-started'})
    if (choice?.accepted) await run.recordTokenHeader(choice.header, 'verify')
    options.progress?.start(tokens.length)
    await runUnderLimit(
      limiter,
      takeFrom(tokens),
      async (token) => {
        const check = await probe(client.withCredential(token.token), token.userId)
        if (check.unchecked) {
          // Nothing learnt: no token-verified entry (purge-keys goes by the latest real answer).
          uncheckedCount += 1
          if (unchecked.length < 10) unchecked.push({reason: check.reason, user: token.userName})
          rows.push({legacy: 'not checked', outcome: `could not check: ${check.reason}`, status: check.status, token})
          options.progress?.advance(1, failed, limiter.limit)
          return
        }
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
            legacy = legacyCheck.unchecked
              ? 'could not check'
              : legacyCheck.status === '200'
                ? 'still accepted'
                : 'refused'
            if (legacyCheck.status === '200') legacyStillAccepted.add(token.userId)
          } else legacy = 'none'
        }
        const good = ok && legacy !== 'still accepted'
        if (!good) {
          failed += 1
          if (failures.length < 10)
            failures.push({reason: ok ? 'legacy key still accepted' : check.reason, user: token.userName})
        }
        rows.push({legacy, outcome: ok ? 'ok' : `not accepted: ${check.reason}`, status: check.status, token})
        options.progress?.advance(1, failed, limiter.limit)
      },
      {signal: options.signal},
    )
    const reportPath = run.file(VERIFY_REPORT)
    // Tokens revoke revoked are reported as revoked (from revoked.jsonl), not as verified.
    for (const token of all)
      if (token.revokedAt)
        rows.push({legacy: 'not checked', outcome: `revoked ${token.revokedAt}`, status: 'not checked', token})
    await writeCsvReport(reportPath, COLUMNS, rows)
    const counts = {
      failed,
      legacyStillAccepted: legacyStillAccepted.size,
      ok: rows.filter((row) => row.status === '200').length,
      revoked,
      tokens: tokens.length,
      unchecked: uncheckedCount,
    }
    await run.record({command: 'verify', kind: 'run-finished', summary: counts})
    if (choice && !choice.accepted && counts.ok === 0)
      warnings.push(
        `No token was accepted through ${choice.tried.join(' or ')} (the first ${Math.min(HEADER_SAMPLES, tokens.length)} were tried in each), so the header is not what fails (unless the site reads a header not tried: name it with --header-name): the tokens themselves are refused, e.g. revoked or signed with another secret.`,
      )
    return {
      concurrency: limiter.report(),
      counts,
      failures,
      headerName: client.headerName,
      reportPath,
      runId: run.meta.runId,
      unchecked,
      warnings,
    }
  } finally {
    await run.unlock()
    await client.close()
  }
}

/** How many of the run's tokens may be tried in every usual header before the header is ruled out. */
const HEADER_SAMPLES = 3

/**
 * The header to send the tokens in, settled with the run's first live tokens before the others
 * are checked: --header-name, else what --ckan-ini says the live CKAN version reads, else the run
 * folder's record; and when CKAN refuses a token there, the other usual headers (a site reading
 * another header must not make every token look dead). A token refused in every header may be
 * dead on its own: the next sample is tried, up to HEADER_SAMPLES.
 */
async function settleHeader(
  client: CkanApiClient,
  samples: readonly RunToken[],
  options: VerifyOptions,
  recorded: string | undefined,
): Promise<HeaderChoice> {
  const env = options.env ?? process.env
  const version = versionOfRelease((await client.statusShow()).ckanVersion)
  const ini = options.ckanIniPath
    ? await readCkanIni(options.ckanIniPath, {caseRule: iniCaseRule(version), env})
    : undefined
  const known = configuredTokenHeader({env, flag: options.headerName, ini, version})
  let choice: HeaderChoice | undefined
  for (const token of samples) {
    choice = await chooseTokenHeader({
      accepts: async (name) =>
        (await probe(client.withHeader(name).withCredential(token.token), token.userId)).status === '200',
      known,
      recorded,
    })
    refuseOverriddenFlag(choice)
    if (choice.accepted) break
  }
  return choice!
}

/**
 * api_token_list for the user with one credential alone: '200', '403', or the failure. A 5xx,
 * 429 or 408 that outlasted the client's retries (the one policy of retry-policy.ts), a lost
 * connection or an interrupt is `unchecked`: CKAN said nothing about the credential.
 */
async function probe(
  client: CkanApiClient,
  userId: string,
): Promise<{reason: string; status: string; unchecked?: boolean}> {
  try {
    await client.listApiTokens(userId)
    return {reason: '', status: '200'}
  } catch (error) {
    if (error instanceof CkanApiError && (error.status >= 500 || error.status === 429 || error.status === 408))
      return {reason: `HTTP ${error.status}: ${error.ckanMessage}`, status: String(error.status), unchecked: true}
    if (error instanceof CkanApiError) return {reason: error.ckanMessage, status: String(error.status)}
    if (error instanceof CkanUnreachableError)
      return {
        reason: error.message.replace(/^Cannot reach CKAN for api_token_list: /, ''),
        status: 'error',
        unchecked: true,
      }
    if (error instanceof MigrateError && error.exitCode !== 1) throw error
    return {reason: describeError(error), status: 'error'}
  }
}
