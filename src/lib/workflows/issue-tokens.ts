import {access, constants, readdir} from 'node:fs/promises'
import {dirname, resolve} from 'node:path'
import pLimit from 'p-limit'

import {CkanApiError, type CkanApiClient, CkanUnreachableError, OutcomeUnknownError} from '../ckan/ckan-api-client.js'
import {readCkanIni} from '../ckan/ckan-ini.js'
import {chooseDatabaseUrl} from '../ckan/ckan-settings.js'
import {type CkanUserRow, readUsersFile, sampleUsers, selectUsers, type SkippedUser} from '../ckan/user-selection.js'
import {readCredential} from '../credential.js'
import {openCkanDatabase} from '../db/ckan-database.js'
import {describeError, EXIT_CODES, MigrateError} from '../errors.js'
import {type CsvColumn, writeCsvReport} from '../files/csv-report.js'
import {openRunFolder, type RunFolder, type RunToken} from '../files/run-folder.js'
import type {Secret} from '../secret.js'
import {reconcileUnknownCreate, unsettledCreates, type UnsettledUser} from '../tokens/reconcile.js'
import {checkSameSite, preflightSite} from '../tokens/site-preflight.js'
import {checkTokenNameTemplate, DEFAULT_TOKEN_NAME, renderTokenName} from '../tokens/token-name.js'

export const ISSUE_TOKENS_REPORT = 'issue-tokens-report.csv'
/** Tries per user before it counts as failed (each unknown outcome is reconciled first). */
const MAX_ATTEMPTS = 8

export type IssueTokensProgress = {
  /** One user finished (issued, already issued or failed). */
  advance(failed: number): void
  start(total: number): void
}

export type IssueTokensOptions = {
  caCertPath?: string
  ckanIniPath?: string
  ckanUrl: URL
  concurrency: number
  databaseUrl?: string
  dryRun: boolean
  env?: NodeJS.ProcessEnv
  expiresIn?: number
  /** Test seam for the HTTP client. */
  fetch?: typeof fetch
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

export type Outcome = 'already issued' | 'failed' | 'issued' | 'not started' | 'planned' | 'revoked' | 'skipped'

export type IssueTokensResult = {
  ckanVersion: string
  counts: {alreadyIssued: number; failed: number; issued: number; notStarted: number; planned: number; revoked: number; selected: number; skipped: number}
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

type UserState = {
  attempts: number
  createdAt?: string | null
  expiresAt?: string | null
  jtiFingerprint?: string
  outcome: Outcome
  reason?: string
  tokenName?: string
}

type ReportRow = {state: UserState; user: CkanUserRow}

const COLUMNS: ReadonlyArray<CsvColumn<ReportRow>> = [
  {header: 'user_id', value: (row) => row.user.id},
  {header: 'name', value: (row) => row.user.name},
  {header: 'state', value: (row) => row.user.state},
  {header: 'sysadmin', value: (row) => row.user.sysadmin},
  {header: 'email', value: (row) => row.user.email},
  {header: 'outcome', value: (row) => (row.state.reason ? `${row.state.outcome}: ${row.state.reason}` : row.state.outcome)},
  {header: 'token_name', value: (row) => row.state.tokenName},
  {header: 'token_id_fingerprint', value: (row) => row.state.jtiFingerprint},
  {header: 'created_at', value: (row) => row.state.createdAt},
  {header: 'expires_at', value: (row) => row.state.expiresAt},
  {header: 'attempts', value: (row) => row.state.attempts},
]

/**
 * Gives every selected user exactly one API token of this run, durably and resumably:
 * a `create-sent` journal entry before each api_token_create, the token fsync'd to the store
 * before the user counts as done, and every unknown outcome reconciled through api_token_list
 * (a token of this run that is not in the store is revoked and created again).
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
  const ini = options.ckanIniPath ? await readCkanIni(options.ckanIniPath, {env}) : undefined
  const databaseUrl = chooseDatabaseUrl({databaseUrl: options.databaseUrl, ini}, env).url
  const named = options.usersFile ? await readUsersFile(options.usersFile) : options.users

  const site = await preflightSite({
    caCertPath: options.caCertPath,
    ckanUrl: options.ckanUrl,
    credential,
    env,
    fetch: options.fetch,
    ini,
    timeoutMs: options.timeoutMs,
  })
  const {client} = site
  try {
    const expiring = site.status.extensions.includes('expire_api_token')
    if (expiring && options.expiresIn === undefined) {
      throw new MigrateError(`${options.ckanUrl.host} has the expire_api_token plugin, which requires a lifetime for every token`, {
        exitCode: EXIT_CODES.badInput,
        suggestion: 'Pass --expires-in N --unit day (or hour, minute, second).',
      })
    }
    if (!expiring && options.expiresIn !== undefined) {
      warnings.push('--expires-in is ignored: the expire_api_token plugin is not enabled, so CKAN tokens do not expire.')
    }

    // READ ONLY per transaction, not per session: PGlite shares one session between its clients.
    const database = await openCkanDatabase(databaseUrl, {readOnly: false, statementTimeoutMs: 120_000})
    let selection
    let samples
    try {
      await database.client.query('BEGIN TRANSACTION READ ONLY')
      samples = await sampleUsers(database.client, 3)
      selection = await selectUsers(database.client, {
        includePending: options.includePending,
        includeSiteUser: options.includeSiteUser,
        limit: options.limit,
        siteUserName: site.siteUserName,
        sysadminsOnly: options.sysadminsOnly,
        users: named,
      })
      await database.client.query('ROLLBACK')
    } finally {
      await database.close()
    }
    await checkSameSite(client, samples, database.where)

    const runSite = {ckanUrl: options.ckanUrl.href, siteUserName: site.siteUserName}
    if (options.dryRun) {
      const run = await inspectRunFolder(options.out, runSite)
      const done = new Map((await run?.readTokens())?.filter((token) => token.source === 'issue-tokens').map((token) => [token.userId, token]))
      const states = new Map<string, UserState>()
      for (const user of selection.selected) {
        const token = done.get(user.id)
        states.set(user.id, {attempts: 0, outcome: token ? (token.revokedAt ? 'revoked' : 'already issued') : 'planned'})
      }
      return summarise({ckanVersion: site.status.ckanVersion, dryRun: true, interrupted: false, out: options.out, reportPath: null, run, selection, states, warnings})
    }

    const run = await openRunFolder(options.out, {create: true, site: runSite})
    await run.lock('issue-tokens')
    try {
      await run.record({command: 'issue-tokens', dryRun: false, kind: 'run-started'})
      const issuer = await TokenIssuer.create(run, client, {
        date: run.meta.createdAt.slice(0, 10),
        expiresIn: options.expiresIn,
        template,
        unit: options.unit,
      })
      const states = new Map<string, UserState>()
      for (const user of selection.selected) states.set(user.id, {attempts: 0, outcome: 'not started'})
      if (selection.skipped.length > 0) {
        const at = new Date().toISOString()
        // One write and one fsync for all of them.
        await run.journal.append(...selection.skipped.map((skip) => ({at, kind: 'user-skipped' as const, reason: skip.reason, userId: skip.user.id, userName: skip.user.name})))
      }

      let failed = 0
      let fatal: unknown
      // Creates a previous run left unaccounted for (kill -9, timeouts): nothing of theirs is in flight now.
      await issuer.settle(options.concurrency)
      issuer.plan(selection.selected, Math.max(64, options.concurrency * 8))
      options.progress?.start(selection.selected.length)
      // A fixed pool of workers taking users in order: no pending task per user (100k users stay small).
      let next = 0
      const worker = async () => {
        while (next < selection.selected.length && !options.signal?.aborted && !fatal) {
          const user = selection.selected[next++]!
          const state = states.get(user.id)!
          try {
            await issuer.issue(user, state)
          } catch (error) {
            fatal ??= error
            return
          }
          if (state.outcome === 'failed') failed += 1
          options.progress?.advance(failed)
        }
      }
      await Promise.all(Array.from({length: Math.min(options.concurrency, selection.selected.length)}, worker))
      // The final sweep: every create of this run has ended, so a late commit is found now.
      await issuer.flush()
      if (!fatal) await issuer.settle(options.concurrency)
      const reportPath = run.file(ISSUE_TOKENS_REPORT)
      await writeCsvReport(reportPath, COLUMNS, reportRows(selection, states))
      const result = summarise({
        ckanVersion: site.status.ckanVersion,
        dryRun: false,
        interrupted: Boolean(options.signal?.aborted),
        out: options.out,
        reportPath,
        run,
        selection,
        states,
        warnings,
      })
      await run.record({command: 'issue-tokens', kind: 'run-finished', summary: result.counts})
      if (fatal) throw fatal
      return result
    } finally {
      await run.unlock()
    }
  } finally {
    await client.close()
  }
}

type IssuerSettings = {date: string; expiresIn?: number; template: string; unit?: number}

type DoneToken = {createdAt: string; expiresAt?: string | null; jti: Secret; revokedAt?: string; tokenName: string}

/** Issues one user's token with the run's durability rules. */
class TokenIssuer {
  /** Users whose first create-sent is journaled (ahead of time, a window at a time). */
  readonly #announced = new Set<string>()
  /** Announced users whose create was not sent (yet): settled without a call at the end of the run. */
  readonly #announcedUnsent = new Map<string, string>()
  #announcing: Promise<void> | undefined
  readonly #client: CkanApiClient
  readonly #done: Map<string, DoneToken>
  /** The first failure of a journal write nobody waited for (token-issued), rethrown by flush(). */
  #lateError: unknown
  /** Journal writes nobody waits for (token-issued) still in flight, awaited by flush(). */
  readonly #lateWrites = new Set<Promise<void>>()
  #next = 0
  #queue: CkanUserRow[] = []
  readonly #jtis: Set<string>
  readonly #run: RunFolder
  readonly #settings: IssuerSettings
  #window = 64
  /** Creates per user whose outcome nothing accounts for yet (sent minus issued since the last settle). */
  readonly #unsettled: Map<string, {count: number; userName: string}>

  private constructor(run: RunFolder, client: CkanApiClient, settings: IssuerSettings, stored: RunToken[], unsettled: Map<string, UnsettledUser>) {
    this.#run = run
    this.#client = client
    this.#settings = settings
    this.#done = new Map()
    this.#jtis = new Set()
    this.#unsettled = new Map([...unsettled.values()].map((user) => [user.userId, {count: 1, userName: user.userName}]))
    for (const token of stored) {
      this.#jtis.add(token.jti.reveal())
      if (token.source === 'issue-tokens') this.#done.set(token.userId, token)
    }
  }

  static async create(run: RunFolder, client: CkanApiClient, settings: IssuerSettings): Promise<TokenIssuer> {
    return new TokenIssuer(run, client, settings, await run.readTokens(), unsettledCreates(await run.journal.readAll()))
  }

  /** Waits for the journal writes issue() did not wait for; rethrows the first failure. */
  async flush(): Promise<void> {
    await Promise.all(this.#lateWrites)
    if (this.#lateError) throw this.#lateError
  }

  /**
   * The users this run will try, in order. Their first `create-sent` entries are journaled a
   * window at a time, ahead of their creates (one fsync per window instead of one per user): an
   * entry for a create never sent costs only one api_token_list on a resume after a crash.
   */
  plan(users: CkanUserRow[], window: number): void {
    this.#queue = users.filter((user) => !this.#done.has(user.id))
    this.#next = 0
    this.#window = window
  }

  async issue(user: CkanUserRow, state: UserState): Promise<void> {
    const stored = this.#done.get(user.id)
    if (stored) {
      Object.assign(state, {
        createdAt: stored.createdAt,
        expiresAt: stored.expiresAt ?? null,
        jtiFingerprint: stored.jti.fingerprint(),
        tokenName: stored.tokenName,
      })
      // Revoked by `revoke`: a rollback, so the user gets no new token in this run.
      if (stored.revokedAt) Object.assign(state, {outcome: 'revoked', reason: `revoked ${stored.revokedAt}; issue again with a new --out`})
      else state.outcome = 'already issued'
      return
    }
    const tokenName = renderTokenName(this.#settings.template, {date: this.#settings.date, run: this.#run.meta.runId, user: user.name})
    state.tokenName = tokenName
    let mustReconcile = this.#unsettled.has(user.id)
    let lastReason = ''
    while (state.attempts < MAX_ATTEMPTS) {
      if (state.attempts > 0) await pause(state.attempts)
      try {
        if (mustReconcile) await this.#reconcile(user.id, user.name, false)
        mustReconcile = false
      } catch (error) {
        if (!isTransient(error)) throw error
        state.attempts += 1
        lastReason = `could not check for a token created earlier: ${describeError(error)}`
        continue
      }
      state.attempts += 1
      // Write-ahead: the create-sent entry is on disk before the request leaves.
      if (state.attempts === 1 && this.#queue.length > 0) await this.#announce(user.id)
      else await this.#run.record({attempt: state.attempts, kind: 'create-sent', tokenName, userId: user.id, userName: user.name})
      this.#announcedUnsent.delete(user.id)
      const unsettled = this.#unsettled.get(user.id) ?? {count: 0, userName: user.name}
      unsettled.count += 1
      this.#unsettled.set(user.id, unsettled)
      let created
      try {
        created = await this.#client.createApiToken({expiresIn: this.#settings.expiresIn, name: tokenName, unit: this.#settings.unit, user: user.id})
      } catch (error) {
        if (error instanceof OutcomeUnknownError) {
          mustReconcile = true
          lastReason = describeError(error)
          continue
        }
        if (error instanceof CkanUnreachableError || (error instanceof CkanApiError && error.status === 429)) {
          lastReason = describeError(error)
          continue
        }
        if (error instanceof CkanApiError) {
          await this.#fail(user, state, error.message)
          return
        }
        throw error
      }
      const createdAt = created.issuedAt ?? new Date().toISOString()
      // The token is on disk (fsync'd) before anything counts the user as done.
      await this.#run.storeToken({
        createdAt,
        expiresAt: created.expiresAt,
        jti: created.jti,
        source: 'issue-tokens',
        token: created.token,
        tokenName,
        userId: user.id,
        userName: user.name,
      })
      this.#jtis.add(created.jti.reveal())
      this.#done.set(user.id, {createdAt, expiresAt: created.expiresAt, jti: created.jti, tokenName})
      // Not waited for: the store is the truth; without this entry a resume only re-checks the user.
      const issued = this.#run.record({jtiFingerprint: created.jti.fingerprint(), kind: 'token-issued', tokenName, userId: user.id, userName: user.name})
      const tracked: Promise<void> = issued
        .catch((error: unknown) => {
          this.#lateError ??= error
        })
        .finally(() => this.#lateWrites.delete(tracked))
      this.#lateWrites.add(tracked)
      unsettled.count -= 1
      if (unsettled.count <= 0) this.#unsettled.delete(user.id)
      Object.assign(state, {createdAt, expiresAt: created.expiresAt, jtiFingerprint: created.jti.fingerprint(), outcome: 'issued'})
      return
    }
    await this.#fail(user, state, `gave up after ${state.attempts} attempts: ${lastReason}`)
  }

  /**
   * The sweep: reconciles every user with a create whose outcome is still unaccounted for, at a
   * moment when none of their creates is in flight (before the first create of a run, after the
   * last). A token CKAN committed after an earlier check is found here and revoked (never
   * adopted: CKAN shows a token only once). A user whose check fails stays unsettled for the next
   * run (and is reconciled before its next create). Returns how many users were settled.
   */
  async settle(concurrency: number): Promise<number> {
    // Announced users whose create never left this process: nothing to ask CKAN (unless an
    // earlier run left them unsettled: the calls below check those).
    const unsent = [...this.#announcedUnsent].filter(([userId]) => !this.#unsettled.has(userId))
    this.#announcedUnsent.clear()
    if (unsent.length > 0) {
      const at = new Date().toISOString()
      await this.#run.journal.append(...unsent.map(([userId, userName]) => ({at, kind: 'create-settled' as const, userId, userName})))
    }
    const limit = pLimit(concurrency)
    let settled = 0
    await Promise.all(
      [...this.#unsettled.entries()].map(([userId, {userName}]) =>
        limit(async () => {
          try {
            await this.#reconcile(userId, userName, true)
            this.#unsettled.delete(userId)
            settled += 1
          } catch (error) {
            if (!isTransient(error)) throw error
          }
        }),
      ),
    )
    return settled
  }

  /** Journals the first create-sent of the window of queued users that holds `userId` (one fsync). */
  async #announce(userId: string): Promise<void> {
    while (!this.#announced.has(userId)) {
      if (this.#announcing) {
        await this.#announcing
        continue
      }
      const batch = this.#queue.slice(this.#next, this.#next + this.#window)
      if (batch.length === 0) throw new Error(`issue-tokens: user ${userId} is not in the plan`)
      this.#next += batch.length
      const at = new Date().toISOString()
      const {date, template} = this.#settings
      const runId = this.#run.meta.runId
      this.#announcing = this.#run.journal
        .append(
          ...batch.map((queued) => ({
            at,
            attempt: 1,
            kind: 'create-sent' as const,
            tokenName: renderTokenName(template, {date, run: runId, user: queued.name}),
            userId: queued.id,
            userName: queued.name,
          })),
        )
        .then(() => {
          for (const queued of batch) {
            this.#announced.add(queued.id)
            this.#announcedUnsent.set(queued.id, queued.name)
          }
        })
        .finally(() => {
          this.#announcing = undefined
        })
    }
  }

  async #fail(user: CkanUserRow, state: UserState, reason: string): Promise<void> {
    state.outcome = 'failed'
    state.reason = reason
    await this.#run.record({kind: 'user-failed', reason, userId: user.id, userName: user.name})
  }

  /** Revokes every token of this run that CKAN holds for the user but our store does not. */
  async #reconcile(userId: string, userName: string, settle: boolean): Promise<void> {
    await reconcileUnknownCreate(this.#client, this.#run, {settle, storedJtis: this.#jtis, userId, userName})
  }
}

function isTransient(error: unknown): boolean {
  return (
    error instanceof OutcomeUnknownError ||
    error instanceof CkanUnreachableError ||
    (error instanceof CkanApiError && (error.status >= 500 || error.status === 429 || error.status === 408))
  )
}

async function pause(attempt: number): Promise<void> {
  const ms = Math.random() * Math.min(2000, 100 * 2 ** attempt)
  await new Promise((resolve) => {
    setTimeout(resolve, ms)
  })
}

/** Under --dry-run: an existing run folder is opened read-only; a new one must be creatable. */
async function inspectRunFolder(out: string, site: {ckanUrl: string; siteUserName: string}): Promise<RunFolder | undefined> {
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

function* reportRows(selection: {selected: CkanUserRow[]; skipped: SkippedUser[]}, states: Map<string, UserState>): Generator<ReportRow> {
  for (const user of selection.selected) yield {state: states.get(user.id)!, user}
  for (const skip of selection.skipped) yield {state: {attempts: 0, outcome: 'skipped', reason: skip.reason}, user: skip.user}
}

function summarise(input: {
  ckanVersion: string
  dryRun: boolean
  interrupted: boolean
  out: string
  reportPath: string | null
  run: RunFolder | undefined
  selection: {selected: CkanUserRow[]; skipped: SkippedUser[]}
  states: Map<string, UserState>
  warnings: string[]
}): IssueTokensResult {
  const counts = {alreadyIssued: 0, failed: 0, issued: 0, notStarted: 0, planned: 0, revoked: 0, selected: input.selection.selected.length, skipped: input.selection.skipped.length}
  const failures: IssueTokensResult['failures'] = []
  for (const user of input.selection.selected) {
    const state = input.states.get(user.id)!
    if (state.outcome === 'already issued') counts.alreadyIssued += 1
    else if (state.outcome === 'failed') {
      counts.failed += 1
      if (failures.length < 10) failures.push({reason: state.reason ?? '', user: user.name})
    } else if (state.outcome === 'issued') counts.issued += 1
    else if (state.outcome === 'planned') counts.planned += 1
    else if (state.outcome === 'revoked') counts.revoked += 1
    else counts.notStarted += 1
  }
  const skippedByReason: Record<string, number> = {}
  for (const skip of input.selection.skipped) skippedByReason[skip.reason] = (skippedByReason[skip.reason] ?? 0) + 1
  return {
    ckanVersion: input.ckanVersion,
    counts,
    dryRun: input.dryRun,
    failures,
    interrupted: input.interrupted,
    reportPath: input.reportPath,
    runFolder: resolve(input.out),
    runId: input.run?.meta.runId ?? null,
    skippedByReason,
    warnings: input.warnings,
  }
}
