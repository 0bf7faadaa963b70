import {access, constants, readdir} from 'node:fs/promises'
import {dirname, resolve} from 'node:path'

import type {Progress} from '../progress.js'
import {resolveSiteDatabase} from '../site/site-database.js'
import {
  type AdaptiveLimiter,
  type ConcurrencyOptions,
  type ConcurrencyReport,
  createLimiter,
} from '../site/adaptive-limit.js'
import type {CkanApiClient} from '../site/ckan-api-client.js'
import {
  type CkanUserRow,
  countKeyHolders,
  namedUsers,
  readUsersFile,
  sampleUsers,
  type SelectionItem,
  selectUsers,
  streamUsers,
  type UserSelection,
  type UserSelectionOptions,
} from '../site/user-selection.js'
import {readCredential} from '../site/credential.js'
import {type CkanDatabase, openCkanDatabase, readOnlyTransaction} from '../site/ckan-database.js'
import {EXIT_CODES, MigrateError} from '../errors.js'
import {assertFreeSpace} from '../fs/free-space.js'
import {type CsvColumn, writeCsvReport} from '../fs/csv-report.js'
import {type JournalEntry, openRunFolder, type RunFolder} from '../run/run-folder.js'
import {readScratch, removeScratch, ScratchWriter} from '../run/scratch-file.js'
import {checkSameSite, preflightSite} from '../site/site-preflight.js'
import {AnnouncedFeed, issueFromFeed, TokenIssuer, type UserOutcome} from '../run/token-issuer.js'
import {checkTokenNameTemplate, DEFAULT_TOKEN_NAME} from '../run/token-name.js'
import {limitHeapGrowth} from '../run/heap-growth.js'

export type {Outcome} from '../run/token-issuer.js'

export const ISSUE_TOKENS_REPORT = 'issue-tokens-report.csv'

/** One user finished (issued, already issued or failed) is one step; the bar shows the concurrency limit. */
export type IssueTokensProgress = Progress

export type IssueTokensOptions = ConcurrencyOptions & {
  caCertPath?: string
  ckanIniPath?: string
  ckanUrl: URL
  databaseUrl?: string
  dryRun: boolean
  env?: NodeJS.ProcessEnv
  expiresIn?: number
  /** --header-name (token-header.ts). */
  headerName?: string
  includePending?: boolean
  includeSiteUser?: boolean
  limit?: number
  out: string
  progress?: IssueTokensProgress
  /** Fires on Ctrl-C: no new user starts, in-flight ones finish, the report is written. */
  signal?: AbortSignal
  apiKeyFile?: string
  sysadminsOnly?: boolean
  timeoutMs?: number
  tokenName?: string
  /** Seconds per --expires-in step (1, 60, 3600, 86400). */
  unit?: number
  users?: string[]
  usersFile?: string
}

export type IssueTokensResult = {
  ckanVersion: string
  /** The concurrency limit (settled on, highest) and the answer times seen, idle and under load. */
  concurrency: ConcurrencyReport
  counts: {
    alreadyIssued: number
    failed: number
    issued: number
    notStarted: number
    planned: number
    revoked: number
    selected: number
    skipped: number
  }
  dryRun: boolean
  /** A few failures, for the summary; the report has all. */
  failures: Array<{reason: string; user: string}>
  interrupted: boolean
  reportPath: string | null
  runFolder: string
  runId: string | null
  /** Skipped users by reason (the report lists each one). */
  skippedByReason: Record<string, number>
  /** Warnings for the envelope (the command shows them). */
  warnings: string[]
}

const COLUMNS: ReadonlyArray<CsvColumn<UserOutcome>> = [
  {header: 'user_id', value: (row) => row.user.id},
  {header: 'name', value: (row) => row.user.name},
  {header: 'state', value: (row) => row.user.state},
  {header: 'sysadmin', value: (row) => row.user.sysadmin},
  {header: 'email', value: (row) => row.user.email},
  {header: 'outcome', value: (row) => (row.reason ? `${row.outcome}: ${row.reason}` : row.outcome)},
  {header: 'token_name', value: (row) => row.tokenName},
  {header: 'token_id_fingerprint', value: (row) => row.jtiFingerprint},
  {header: 'created_at', value: (row) => row.createdAt},
  {header: 'expires_at', value: (row) => row.expiresAt},
  {header: 'attempts', value: (row) => row.attempts},
]

/** Scratch files in the run folder (0600, removed at the end): the users to issue, and each user's outcome for the report. */
const QUEUE_FILE = '.issue-tokens-queue.jsonl'
const OUTCOMES_FILE = '.issue-tokens-outcomes.jsonl'
/** Skipped users are journaled this many per write (one fsync each). */
const SKIPPED_PER_WRITE = 1000
/** How far V8 may grow its heap during a run (see heap-growth.ts). */
const HEAP_GROWTH = {newSpaceMiB: 16, oldGrowingPercent: 50}

/**
 * Gives every selected user exactly one API token of this run, durably and resumably:
 * a `create-sent` journal entry before each api_token_create, the token fsync'd to the store
 * before the user counts as done, and every unknown outcome reconciled through api_token_list
 * (a token of this run that is not in the store is revoked and created again).
 *
 * Memory stays flat in the number of users: the selection is streamed from the database in
 * keyset pages into a private scratch queue in the run folder, workers take users from it a
 * window at a time, and each outcome goes to a scratch file that the CSV report is streamed from.
 */
export async function issueTokens(options: IssueTokensOptions): Promise<IssueTokensResult> {
  const env = options.env ?? process.env
  const warnings: string[] = []
  const template = checkTokenNameTemplate(options.tokenName ?? DEFAULT_TOKEN_NAME)
  if ((options.expiresIn === undefined) !== (options.unit === undefined)) {
    throw new MigrateError('--expires-in and --unit go together', {
      exitCode: EXIT_CODES.badInput,
      suggestion: 'Pass both, e.g. --expires-in 365 --unit day.',
    })
  }
  const credential = await readCredential({env, file: options.apiKeyFile})
  if (credential.warning) warnings.push(credential.warning)
  const {ini, url: databaseUrl} = await resolveSiteDatabase({
    ckanIniPath: options.ckanIniPath,
    databaseUrl: options.databaseUrl,
    env,
  })
  const named = options.usersFile
    ? await readUsersFile(options.usersFile)
    : options.users && namedUsers(options.users, '--users')

  const limiter = createLimiter(options)
  const site = await preflightSite({
    caCertPath: options.caCertPath,
    ckanUrl: options.ckanUrl,
    credential,
    env,
    headerName: options.headerName,
    ini,
    observer: limiter,
    signal: options.signal,
    timeoutMs: options.timeoutMs,
  })
  const {client} = site
  warnings.push(...site.warnings)
  try {
    const expiring = site.status.extensions.includes('expire_api_token')
    if (expiring && options.expiresIn === undefined) {
      throw new MigrateError(
        `${options.ckanUrl.host} has the expire_api_token plugin, which requires a lifetime for every token`,
        {
          exitCode: EXIT_CODES.badInput,
          suggestion: 'Pass --expires-in N --unit day (or hour, minute, second).',
        },
      )
    }
    if (!expiring && options.expiresIn !== undefined) {
      warnings.push(
        '--expires-in is ignored: the expire_api_token plugin is not enabled, so CKAN tokens do not expire.',
      )
    }
    const selectionOptions: UserSelectionOptions = {
      includePending: options.includePending,
      includeSiteUser: options.includeSiteUser,
      limit: options.limit,
      siteUserName: site.siteUserName,
      sysadminsOnly: options.sysadminsOnly,
    }

    const database = await openCkanDatabase(databaseUrl, {statementTimeoutMs: 120_000})
    try {
      // Named users (the command line or a file) are read at once, so an unknown name is refused
      // before anything is written.
      const [samples, namedSelection] = await readOnlyTransaction(
        database.client,
        async () =>
          [
            await sampleUsers(database.client, 3),
            named ? await selectUsers(database.client, {...selectionOptions, users: named}) : undefined,
          ] as const,
      )
      await checkSameSite(client, samples, database.where)
      const selection = (): AsyncIterable<SelectionItem> =>
        namedSelection ? namedItems(namedSelection) : streamUsers(database.client, selectionOptions)
      const runSite = {ckanUrl: options.ckanUrl.href, siteUserName: site.siteUserName}
      const tally = new Tally()

      if (options.dryRun) {
        const run = await inspectRunFolder(options.out, runSite)
        const done = new Map<string, boolean>()
        if (run)
          for await (const token of run.streamTokens())
            if (token.source === 'issue-tokens') done.set(token.userId, Boolean(token.revokedAt))
        await readOnlyTransaction(database.client, async () => {
          for await (const {reason, user} of selection()) {
            if (reason !== undefined) tally.skip(reason)
            else
              tally.count({
                attempts: 0,
                outcome: done.has(user.id) ? (done.get(user.id) ? 'revoked' : 'already issued') : 'planned',
                user,
              })
          }
        })
        return tally.result({
          ckanVersion: site.status.ckanVersion,
          concurrency: limiter.report(),
          dryRun: true,
          interrupted: false,
          out: options.out,
          reportPath: null,
          runId: run?.meta.runId ?? null,
          warnings,
        })
      }

      // Before anything is written: a disk that clearly cannot hold the run's files is refused.
      const users = namedSelection
        ? namedSelection.selected.length + namedSelection.skipped.length
        : Math.min(
            options.limit ?? Number.POSITIVE_INFINITY,
            await countKeyHolders(database.client, {sysadminsOnly: options.sysadminsOnly}),
          )
      await assertFreeSpace(options.out, users * RUN_BYTES_PER_USER, `the run files of ${users} users`)
      const run = await openRunFolder(options.out, {create: true, site: runSite})
      await run.lock('issue-tokens')
      try {
        await run.recordTokenHeader(site.header, 'issue-tokens')
        return await issueRun({client, database, limiter, options, run, selection, site, tally, template, warnings})
      } finally {
        await run.close()
        await run.unlock()
      }
    } finally {
      await database.close()
    }
  } finally {
    await client.close()
  }
}

/**
 * A low estimate of what one user costs in the run folder: about 1.1 KiB measured (its
 * tokens.jsonl line about 290 bytes, journal entries, report row, queue and outcome scratch
 * lines). Less free space than half of that per user means the run clearly cannot finish.
 */
const RUN_BYTES_PER_USER = 512

/** The writing part of a run, with the run folder locked. */
async function issueRun(input: {
  client: CkanApiClient
  database: CkanDatabase
  limiter: AdaptiveLimiter
  options: IssueTokensOptions
  run: RunFolder
  selection: () => AsyncIterable<SelectionItem>
  site: {status: {ckanVersion: string}}
  tally: Tally
  template: string
  warnings: string[]
}): Promise<IssueTokensResult> {
  const {limiter, options, run, tally} = input
  // A run keeps a few MiB alive whatever its size; see heap-growth.ts for why V8 is reined in.
  const unlimit = limitHeapGrowth(HEAP_GROWTH)
  await run.record({command: 'issue-tokens', dryRun: false, kind: 'run-started'})
  const outcomes = await ScratchWriter.create<UserOutcome>(run.file(OUTCOMES_FILE))
  const queue = await ScratchWriter.create<CkanUserRow>(run.file(QUEUE_FILE))
  try {
    let failed = 0
    const finish = async (outcome: UserOutcome): Promise<void> => {
      tally.count(outcome)
      if (outcome.outcome === 'failed') failed += 1
      options.progress?.advance(1, failed, limiter.limit)
      await outcomes.write(outcome)
    }
    const issuer = await TokenIssuer.create(
      run,
      input.client,
      {
        date: run.meta.createdAt.slice(0, 10),
        expiresIn: options.expiresIn,
        template: input.template,
        unit: options.unit,
      },
      {maxStoring: limiter.controller.max * 4, onDone: finish},
    )

    // The selection, streamed: skipped users and those done by an earlier run go straight to
    // the report (and the journal); the others to the queue.
    let alreadyDone = 0
    await readOnlyTransaction(input.database.client, async () => {
      const at = new Date().toISOString()
      let skipped: JournalEntry[] = []
      for await (const {reason, user} of input.selection()) {
        if (reason !== undefined) {
          tally.skip(reason)
          await outcomes.write({attempts: 0, outcome: 'skipped', reason, user})
          skipped.push({at, kind: 'user-skipped', reason, userId: user.id, userName: user.name})
          if (skipped.length >= SKIPPED_PER_WRITE) {
            await run.journal.append(...skipped)
            skipped = []
          }
          continue
        }
        tally.selected += 1
        const earlier = issuer.earlierOutcome(user)
        if (earlier) {
          alreadyDone += 1
          tally.count(earlier)
          await outcomes.write(earlier)
        } else {
          await queue.write(user)
        }
      }
      if (skipped.length > 0) await run.journal.append(...skipped)
    })
    await queue.end()

    // Creates a previous run left unaccounted for (kill -9, timeouts): nothing of theirs is in flight now.
    await issuer.settle(limiter)
    options.progress?.start(tally.selected)
    if (alreadyDone > 0) options.progress?.advance(alreadyDone, 0, limiter.limit)
    const feed = new AnnouncedFeed(
      run,
      readScratch<CkanUserRow>(queue.path),
      Math.max(64, limiter.controller.max * 8),
      (user) => issuer.tokenName(user),
    )
    // Users in order, as many at once as the limiter admits; every token handed to the store is
    // fsync'd (or its failure known) before anything else.
    const fatal = await issueFromFeed(issuer, feed, {limiter, signal: options.signal})
    // Users the workers never took (Ctrl-C, a fatal error): in the report as not started.
    const unsent: CkanUserRow[] = []
    for await (const {announced, user} of feed.rest()) {
      if (announced) unsent.push(user)
      await finish({attempts: 0, outcome: 'not started', user})
    }
    // The final sweep: every create of this run has ended, so a late commit is found now.
    if (!fatal) await issuer.settle(limiter, unsent)
    await run.journal.flush()
    await outcomes.end()
    const reportPath = run.file(ISSUE_TOKENS_REPORT)
    await writeCsvReport(reportPath, COLUMNS, readScratch<UserOutcome>(outcomes.path))
    const result = tally.result({
      ckanVersion: input.site.status.ckanVersion,
      concurrency: limiter.report(),
      dryRun: false,
      interrupted: Boolean(options.signal?.aborted),
      out: options.out,
      reportPath,
      runId: run.meta.runId,
      warnings: input.warnings,
    })
    await run.record({command: 'issue-tokens', kind: 'run-finished', summary: result.counts})
    if (fatal) throw fatal
    return result
  } finally {
    unlimit()
    await Promise.allSettled([outcomes.end(), queue.end()])
    await Promise.all([removeScratch(outcomes.path), removeScratch(queue.path)])
  }
}

/** Counts of a run (never a list of users: a few failures for the summary at most). */
class Tally {
  readonly counts = {alreadyIssued: 0, failed: 0, issued: 0, notStarted: 0, planned: 0, revoked: 0}
  readonly failures: IssueTokensResult['failures'] = []
  selected = 0
  readonly skippedByReason: Record<string, number> = {}
  skipped = 0

  /** A selected user's outcome (dry run: counts it as selected too). */
  count(outcome: UserOutcome): void {
    switch (outcome.outcome) {
      case 'already issued': {
        this.counts.alreadyIssued += 1
        break
      }
      case 'failed': {
        this.counts.failed += 1
        if (this.failures.length < 10) this.failures.push({reason: outcome.reason ?? '', user: outcome.user.name})
        break
      }
      case 'issued': {
        this.counts.issued += 1
        break
      }
      case 'planned': {
        this.counts.planned += 1
        break
      }
      case 'revoked': {
        this.counts.revoked += 1
        break
      }
      default: {
        this.counts.notStarted += 1
      }
    }
  }

  result(input: {
    ckanVersion: string
    concurrency: ConcurrencyReport
    dryRun: boolean
    interrupted: boolean
    out: string
    reportPath: string | null
    runId: string | null
    warnings: string[]
  }): IssueTokensResult {
    const selected = input.dryRun
      ? this.counts.alreadyIssued + this.counts.planned + this.counts.revoked
      : this.selected
    return {
      ckanVersion: input.ckanVersion,
      concurrency: input.concurrency,
      counts: {...this.counts, selected, skipped: this.skipped},
      dryRun: input.dryRun,
      failures: this.failures,
      interrupted: input.interrupted,
      reportPath: input.reportPath,
      runFolder: resolve(input.out),
      runId: input.runId,
      skippedByReason: this.skippedByReason,
      warnings: input.warnings,
    }
  }

  skip(reason: string): void {
    this.skipped += 1
    this.skippedByReason[reason] = (this.skippedByReason[reason] ?? 0) + 1
  }
}

async function* namedItems(selection: UserSelection): AsyncGenerator<SelectionItem> {
  for (const user of selection.selected) yield {user}
  for (const skip of selection.skipped) yield skip
}

/** Under --dry-run: an existing run folder is opened read-only; a new one must be creatable. */
async function inspectRunFolder(
  out: string,
  site: {ckanUrl: string; siteUserName: string},
): Promise<RunFolder | undefined> {
  const path = resolve(out)
  let entries: string[] | undefined
  try {
    entries = await readdir(path)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
  }
  if (entries?.includes('run.json')) return openRunFolder(path, {create: false, site})
  if (entries && entries.length > 0) {
    throw new MigrateError(`--out ${path} already holds other files and is not a ckan-migrate run folder`, {
      exitCode: EXIT_CODES.runConflict,
      suggestion: 'Pass a new or empty folder for the run (it will hold secrets, so it is made private).',
    })
  }
  let parent = entries ? path : dirname(path)
  for (;;) {
    try {
      await access(parent, constants.W_OK)
      return undefined
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code
      if (code !== 'ENOENT' || dirname(parent) === parent) {
        throw new MigrateError(`Cannot create the run folder ${path}: ${code ?? 'error'}`, {
          exitCode: EXIT_CODES.writeFailed,
          suggestion: 'Choose an --out folder you may write to (it is created 0700).',
        })
      }
      parent = dirname(parent)
    }
  }
}
