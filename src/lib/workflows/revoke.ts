import {
  type ConcurrencyOptions,
  type ConcurrencyReport,
  createLimiter,
  runUnderLimit,
  takeFrom,
} from '../site/adaptive-limit.js'
import type {Progress} from '../progress.js'
import {CkanApiError} from '../site/ckan-api-client.js'
import {readCredential} from '../site/credential.js'
import {type CsvColumn, writeCsvReport} from '../fs/csv-report.js'
import {checkRunUsers, runTokenColumns} from '../run/run-tokens.js'
import {openRunFolder, type RunToken} from '../run/run-folder.js'
import {preflightSite} from '../site/site-preflight.js'
import {confirmSiteElsewhere} from '../run/site-identity.js'

export const REVOKE_REPORT = 'revoke-report.csv'

export type RevokeOptions = ConcurrencyOptions & {
  /** --allow-other-url: --ckan-url may be another address of the run's site (site-identity.ts). */
  allowOtherUrl?: boolean
  apiKeyFile?: string
  caCertPath?: string
  /** The site's ckan.ini: which header CKAN reads the credential from (token-header.ts). */
  ckanIniPath?: string
  /** Defaults to the site of the run folder. */
  ckanUrl?: URL
  dryRun: boolean
  env?: NodeJS.ProcessEnv
  /** --header-name (token-header.ts). */
  headerName?: string
  out: string
  progress?: Progress
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
  warnings: string[]
}

type Row = {outcome: string; token: RunToken}

const COLUMNS: ReadonlyArray<CsvColumn<Row>> = runTokenColumns<Row>()

/**
 * Rollback: revokes the run's tokens (issue-tokens' and rewrite-config's) by jti through
 * api_token_revoke, with a sysadmin's credential. Idempotent: CKAN treats a sysadmin's revoke of
 * an unknown jti as success, so running it again is safe. Each revoke is journaled.
 */
export async function revokeTokens(options: RevokeOptions): Promise<RevokeResult> {
  const env = options.env ?? process.env
  const run = await openRunFolder(options.out, {
    allowOtherUrl: options.allowOtherUrl,
    create: false,
    site: options.ckanUrl ? {ckanUrl: options.ckanUrl.href} : undefined,
  })
  let tokens = await run.readTokens()
  if (options.users) {
    const wanted = checkRunUsers(
      options.users,
      new Set(tokens.flatMap((token) => [token.userId, token.userName])),
      'Name users (or ids) that issue-tokens gave a token in this run; see its report.',
    )
    tokens = tokens.filter((token) => wanted.has(token.userId) || wanted.has(token.userName))
  }
  const credential = await readCredential({env, file: options.apiKeyFile})
  // Things worth knowing that are not errors (e.g. a key file others can read).
  const warnings = credential.warning ? [credential.warning] : []
  const limiter = createLimiter(options)
  const site = await preflightSite({
    caCertPath: options.caCertPath,
    ckanUrl: options.ckanUrl ?? new URL(run.meta.site.ckanUrl),
    credential,
    env,
    headerName: options.headerName,
    iniPath: options.ckanIniPath,
    observer: limiter,
    recordedHeader: await run.tokenHeader(),
    signal: options.signal,
    timeoutMs: options.timeoutMs,
  })
  const {client} = site
  warnings.push(...site.warnings)
  try {
    // Revoking an unknown jti is a silent success in CKAN: another site must be proven the run's first.
    const elsewhere = {run, siteUserName: site.siteUserName, sysadmin: client, tokens}
    await confirmSiteElsewhere({...elsewhere, command: 'revoke', record: false})
    if (options.dryRun) {
      const planned = tokens.filter((token) => !token.revokedAt).length
      return {
        concurrency: limiter.report(),
        counts: {alreadyRevoked: tokens.length - planned, failed: 0, planned, revoked: 0, tokens: tokens.length},
        dryRun: true,
        failures: [],
        reportPath: null,
        runId: run.meta.runId,
        warnings,
      }
    }
    await run.lock('revoke')
    try {
      await run.recordTokenHeader(site.header, 'revoke')
      await confirmSiteElsewhere({...elsewhere, command: 'revoke', record: true})
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
        options.progress?.advance(1, failed, limiter.limit)
      }
      await runUnderLimit(
        limiter,
        takeFrom(tokens.filter((token) => !token.revokedAt)),
        async (token) => {
          try {
            await client.revokeApiToken(token.jti)
            await run.recordRevoked(token)
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
          options.progress?.advance(1, failed, limiter.limit)
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
      return {
        concurrency: limiter.report(),
        counts,
        dryRun: false,
        failures,
        reportPath,
        runId: run.meta.runId,
        warnings,
      }
    } finally {
      await run.unlock()
    }
  } finally {
    await client.close()
  }
}
