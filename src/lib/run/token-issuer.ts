import {type AdaptiveLimiter, runUnderLimit, takeFrom} from '../site/adaptive-limit.js'
import {CkanApiError, type CkanApiClient, CkanUnreachableError, OutcomeUnknownError} from '../site/ckan-api-client.js'
import {AttemptBudget, protocolPauseMs} from '../site/retry-policy.js'
import type {CkanUserRow} from '../site/user-selection.js'
import {describeError} from '../errors.js'
import type {JournalEntry, RunFolder, RunToken} from './run-folder.js'
import {reconcileUnknownCreate, unsettledCreatesFrom} from './reconcile.js'
import {renderTokenName} from './token-name.js'

export type Outcome = 'already issued' | 'failed' | 'issued' | 'not started' | 'planned' | 'revoked' | 'skipped'

/** One row of the report: the user and what happened (no secret: a jti fingerprint at most). */
export type UserOutcome = {
  attempts: number
  createdAt?: string | null
  expiresAt?: string | null
  jtiFingerprint?: string
  outcome: Outcome
  reason?: string
  tokenName?: string
  user: CkanUserRow
}

export type IssuerSettings = {
  date: string
  expiresIn?: number
  /**
   * An unknown outcome ends the user's attempt (reported as failed; the next run reconciles it
   * first) instead of being reconciled and created again now: rewrite-config's service tokens,
   * whose admin is watching.
   */
  stopAtUnknownOutcome?: boolean
  /**
   * Tokens of the run a user already holds in the store before this issuer runs (rotate: the
   * predecessor, a service user's other services' tokens): reconciliation never revokes them.
   * Without it only the store's tokens of users unsettled at the start are known, which is all
   * issue-tokens needs (a user without an unsettled create has no token of the run yet).
   */
  heldJtis?: (userId: string) => ReadonlySet<string> | undefined
  /**
   * `rotate`: the token of the run a user's new token succeeds (stored with it, so a resume never
   * makes a second successor), and for a service's token its name and source.
   */
  predecessorOf?: (user: CkanUserRow) => Partial<Pick<RunToken, 'predecessorJti' | 'service' | 'source'>> | undefined
  template: string
  unit?: number
}

/** A token of an earlier run of this folder, without its secrets (only what the report shows). */
type DoneToken = {
  createdAt: string
  expiresAt: string | null
  jtiFingerprint: string
  revokedAt?: string
  tokenName: string
}

/**
 * A user whose first create-sent is journaled, with the token name it announced; `service` when
 * the token is a service's (rewrite-config), stored as such.
 */
export type AnnouncedUser = {service?: string; tokenName: string; user: CkanUserRow}

/**
 * Issues users' tokens with the run's durability rules: a `create-sent` entry on disk before each
 * api_token_create, the token fsync'd to the store before the user counts as done, every unknown
 * outcome reconciled through api_token_list (a token of this run that is not in the store is
 * revoked and created again, never adopted).
 *
 * Memory does not grow with the number of users: besides a few counters it keeps the earlier
 * runs' tokens (for resumes) and only the users whose creates are unsettled (faults).
 */
export class TokenIssuer {
  readonly #client: CkanApiClient
  readonly #done: Map<string, DoneToken>
  /** The first failure of a store or journal write nobody waited for, rethrown by drain(). */
  #lateError: unknown
  /** At most this many stores in flight before a worker waits for its own. */
  readonly #maxStoring: number
  readonly #onDone: (outcome: UserOutcome) => Promise<void> | void
  readonly #run: RunFolder
  readonly #settings: IssuerSettings
  /** Tokens fsync'd-to-be: a worker goes on with its next user meanwhile (the user counts when fsync'd). */
  readonly #storing = new Set<Promise<void>>()
  /** Stored jtis of the users with unsettled creates (all a reconcile needs to tell ours from orphans). */
  readonly #storedJtis = new Map<string, Set<string>>()
  /** Creates per user whose outcome nothing accounts for yet (sent minus issued since the last settle). */
  readonly #unsettled: Map<string, {count: number; userName: string}>
  /** Announced users whose create never left (failed checks, fatal errors): settled without a call. */
  readonly #unsent: Array<{id: string; name: string}> = []

  private constructor(
    run: RunFolder,
    client: CkanApiClient,
    settings: IssuerSettings,
    state: {done: Map<string, DoneToken>; unsettled: Map<string, {count: number; userName: string}>},
    options: {maxStoring: number; onDone: (outcome: UserOutcome) => Promise<void> | void},
  ) {
    this.#run = run
    this.#client = client
    this.#settings = settings
    this.#done = state.done
    this.#unsettled = state.unsettled
    this.#maxStoring = options.maxStoring
    this.#onDone = options.onDone
  }

  /** Streams the journal and the store (neither is loaded whole). */
  static async create(
    run: RunFolder,
    client: CkanApiClient,
    settings: IssuerSettings,
    options: {maxStoring: number; onDone: (outcome: UserOutcome) => Promise<void> | void},
  ): Promise<TokenIssuer> {
    const unsettled = new Map<string, {count: number; userName: string}>()
    for (const user of (await unsettledCreatesFrom(run.journal.stream())).values())
      unsettled.set(user.userId, {count: 1, userName: user.userName})
    const done = new Map<string, DoneToken>()
    const issuer = new TokenIssuer(run, client, settings, {done, unsettled}, options)
    for await (const token of run.streamTokens()) {
      if (unsettled.has(token.userId)) issuer.#addStoredJti(token.userId, token.jti.reveal())
      if (token.source !== 'issue-tokens') continue
      const kept: DoneToken = {
        createdAt: token.createdAt,
        expiresAt: token.expiresAt ?? null,
        jtiFingerprint: token.jti.fingerprint(),
        tokenName: token.tokenName,
      }
      if (token.revokedAt) kept.revokedAt = token.revokedAt
      done.set(token.userId, kept)
    }
    return issuer
  }

  /** Whether a write nobody waited for failed: the pool stops taking users. */
  get failed(): boolean {
    return this.#lateError !== undefined
  }

  /** Waits for every token still being stored (and its outcome); rethrows the first failure. */
  async drain(): Promise<void> {
    while (this.#storing.size > 0) await Promise.all(this.#storing)
    if (this.#lateError) throw this.#lateError
  }

  /** The outcome of a user who already holds a token of this run (earlier run), or undefined. */
  earlierOutcome(user: CkanUserRow): UserOutcome | undefined {
    const stored = this.#done.get(user.id)
    if (!stored) return undefined
    const outcome: UserOutcome = {
      attempts: 0,
      createdAt: stored.createdAt,
      expiresAt: stored.expiresAt,
      jtiFingerprint: stored.jtiFingerprint,
      outcome: 'already issued',
      tokenName: stored.tokenName,
      user,
    }
    // Revoked by `revoke`: a rollback, so the user gets no new token in this run.
    if (stored.revokedAt)
      Object.assign(outcome, {outcome: 'revoked', reason: `revoked ${stored.revokedAt}; issue again with a new --out`})
    return outcome
  }

  /**
   * Issues one announced user's token (their first create-sent is on disk). Resolves when the
   * worker may take its next user: after a failure is recorded, or once the token is handed to the
   * store (the user counts as issued, through onDone, only when the store has fsync'd it).
   */
  async issue({service, tokenName, user}: AnnouncedUser): Promise<void> {
    // One budget per user for every request sent for their token (creates, and the lists and
    // revokes of its checks, the client's retries included): the policy's `attempts` (retry-policy.ts).
    const budget = new AttemptBudget(this.#client.retryPolicy.attempts)
    let rounds = 0
    let sent = false
    let mustReconcile = this.#unsettled.has(user.id)
    let lastReason = ''
    while (budget.left > 0) {
      if (rounds > 0) await pause(rounds)
      // Interrupted: no new round (a create in flight was journaled; the next run reconciles it).
      if (this.#client.interrupted) {
        if (!sent) this.#unsent.push(user)
        await this.#fail(user, budget.used, tokenName, `interrupted${lastReason ? ` (${lastReason})` : ''}`)
        return
      }
      try {
        const before = budget.used
        if (mustReconcile)
          await this.#reconcile(user.id, user.name, false, budget).catch((error: unknown) => {
            // A check that failed before sending anything still costs an attempt: the loop ends.
            if (budget.used === before) budget.spend()
            throw error
          })
        mustReconcile = false
      } catch (error) {
        if (!isTransient(error)) {
          if (!sent) this.#unsent.push(user)
          throw error
        }
        rounds += 1
        lastReason = `could not check for a token created earlier: ${describeError(error)}`
        continue
      }
      rounds += 1
      // Write-ahead: the create-sent entry is on disk before the request leaves (the first one
      // was journaled with the user's window by the feed).
      if (rounds > 1)
        await this.#run.record({
          attempt: rounds,
          kind: 'create-sent',
          tokenName,
          userId: user.id,
          userName: user.name,
        })
      sent = true
      const unsettled = this.#unsettled.get(user.id) ?? {count: 0, userName: user.name}
      unsettled.count += 1
      this.#unsettled.set(user.id, unsettled)
      let created
      try {
        created = await this.#client.createApiToken(
          {expiresIn: this.#settings.expiresIn, name: tokenName, unit: this.#settings.unit, user: user.id},
          budget,
        )
      } catch (error) {
        if (error instanceof OutcomeUnknownError) {
          mustReconcile = true
          lastReason = describeError(error)
          if (this.#settings.stopAtUnknownOutcome) {
            await this.#fail(user, budget.used, tokenName, `the outcome is unknown (${lastReason})`)
            return
          }
          continue
        }
        if (error instanceof CkanUnreachableError || (error instanceof CkanApiError && error.status === 429)) {
          lastReason = describeError(error)
          continue
        }
        if (error instanceof CkanApiError) {
          await this.#fail(user, budget.used, tokenName, error.message)
          return
        }
        throw error
      }
      const createdAt = created.issuedAt ?? new Date().toISOString()
      const jtiFingerprint = created.jti.fingerprint()
      const succeeds = this.#settings.predecessorOf?.(user)
      // The token is on disk (fsync'd) before anything counts the user as done.
      const storing: Promise<void> = this.#run
        .storeToken({
          createdAt,
          expiresAt: created.expiresAt,
          jti: created.jti,
          ...(service ? {service, source: 'rewrite-config' as const} : {source: 'issue-tokens' as const}),
          token: created.token,
          tokenName,
          userId: user.id,
          userName: user.name,
          ...succeeds,
        })
        .then(async () => {
          if (this.#unsettled.get(user.id) === unsettled) {
            unsettled.count -= 1
            if (unsettled.count <= 0) this.#unsettled.delete(user.id)
            // An earlier create of this user is still unaccounted for: the final sweep must know this token is ours.
            else this.#addStoredJti(user.id, created.jti.reveal())
          }
          // No fsync of its own: the store is the truth; without this entry a resume only re-checks the user.
          this.#run.recordDeferred({
            jtiFingerprint,
            kind: 'token-issued',
            tokenName,
            userId: user.id,
            userName: user.name,
          })
          if (succeeds?.predecessorJti)
            this.#run.recordDeferred({
              jtiFingerprint,
              kind: 'token-rotated',
              predecessorFingerprint: succeeds.predecessorJti.fingerprint(),
              ...(succeeds.service ? {service: succeeds.service} : {}),
              tokenName,
              userId: user.id,
              userName: user.name,
            })
          await this.#onDone({
            attempts: budget.used,
            createdAt,
            expiresAt: created.expiresAt,
            jtiFingerprint,
            outcome: 'issued',
            tokenName,
            user,
          })
        })
        .catch((error: unknown) => {
          this.#lateError ??= error
        })
        .finally(() => this.#storing.delete(storing))
      this.#storing.add(storing)
      // Back-pressure: a slow disk must not let stores pile up without bound.
      if (this.#storing.size > this.#maxStoring) await storing
      return
    }
    if (!sent) this.#unsent.push(user)
    await this.#fail(user, budget.used, tokenName, `gave up after ${budget.used} attempts: ${lastReason}`)
  }

  /**
   * The sweep: first journals `create-settled` for announced users whose create never left this
   * process (`unsent`, plus those issue() gave up on before sending) unless an earlier run left
   * them unsettled; then reconciles every user with a create whose outcome is still unaccounted
   * for, at a moment when none of their creates is in flight (before the first create of a run,
   * after the last). A token CKAN committed after an earlier check is found here and revoked
   * (never adopted: CKAN shows a token only once). A user whose check fails stays unsettled for
   * the next run (and is reconciled before its next create). Returns how many were reconciled.
   */
  async settle(limiter: AdaptiveLimiter, unsent: Iterable<{id: string; name: string}> = []): Promise<number> {
    const at = new Date().toISOString()
    const entries: JournalEntry[] = []
    for (const user of [...this.#unsent, ...unsent]) {
      if (!this.#unsettled.has(user.id))
        entries.push({at, kind: 'create-settled', userId: user.id, userName: user.name})
    }
    this.#unsent.length = 0
    if (entries.length > 0) await this.#run.journal.append(...entries)
    let settled = 0
    await runUnderLimit(limiter, takeFrom([...this.#unsettled.entries()]), async ([userId, {userName}]) => {
      try {
        await this.#reconcile(userId, userName, true)
        this.#unsettled.delete(userId)
        this.#storedJtis.delete(userId)
        settled += 1
      } catch (error) {
        if (!isTransient(error)) throw error
      }
    })
    return settled
  }

  /** The token name of a user in this run. */
  tokenName(user: CkanUserRow): string {
    return renderTokenName(this.#settings.template, {
      date: this.#settings.date,
      run: this.#run.meta.runId,
      user: user.name,
    })
  }

  #addStoredJti(userId: string, jti: string): void {
    const jtis = this.#storedJtis.get(userId)
    if (jtis) jtis.add(jti)
    else this.#storedJtis.set(userId, new Set([jti]))
  }

  async #fail(user: CkanUserRow, attempts: number, tokenName: string, reason: string): Promise<void> {
    await this.#run.record({kind: 'user-failed', reason, userId: user.id, userName: user.name})
    await this.#onDone({attempts, outcome: 'failed', reason, tokenName, user})
  }

  /** Revokes every token of this run that CKAN holds for the user but our store does not. */
  async #reconcile(userId: string, userName: string, settle: boolean, budget?: AttemptBudget): Promise<void> {
    const stored = this.#storedJtis.get(userId) ?? new Set<string>()
    const held = this.#settings.heldJtis?.(userId)
    await reconcileUnknownCreate(this.#client, this.#run, {
      budget,
      settle,
      storedJtis: held ? new Set([...stored, ...held]) : stored,
      userId,
      userName,
    })
  }
}

/**
 * The users to issue, in order, each announced before a worker gets it: their first
 * `create-sent` entries are journaled a window at a time (one fsync per window instead of one per
 * user), and the next window is journaled while workers still have half a window to take, so
 * nobody waits for it. An entry for a create never sent costs only one api_token_list on a
 * resume after a crash (or nothing: the end of a run settles announced users it did not send).
 */
export class AnnouncedFeed {
  #announcing: Promise<void> | undefined
  #error: unknown
  #exhausted = false
  #head = 0
  readonly #name: (user: CkanUserRow) => string
  #ready: AnnouncedUser[] = []
  readonly #run: RunFolder
  readonly #source: AsyncIterator<CkanUserRow>
  readonly #window: number

  constructor(run: RunFolder, source: AsyncIterable<CkanUserRow>, window: number, name: (user: CkanUserRow) => string) {
    this.#run = run
    this.#source = source[Symbol.asyncIterator]()
    this.#window = window
    this.#name = name
  }

  /** The next announced user, or undefined when there are none left. */
  async next(): Promise<AnnouncedUser | undefined> {
    for (;;) {
      if (this.#error) throw this.#error
      if (this.#head < this.#ready.length) {
        const user = this.#ready[this.#head]!
        this.#ready[this.#head++] = undefined as unknown as AnnouncedUser
        this.#refill()
        return user
      }
      if (this.#exhausted && !this.#announcing) return undefined
      this.#refill()
      await this.#announcing
    }
  }

  /**
   * After the workers stop (Ctrl-C, a fatal error): the users announced but never handed out,
   * then the users never announced. Call once, after every next() has settled.
   */
  async *rest(): AsyncGenerator<{announced: boolean; user: CkanUserRow}> {
    await this.#announcing?.catch(() => {})
    for (let index = this.#head; index < this.#ready.length; index += 1)
      yield {announced: true, user: this.#ready[index]!.user}
    this.#ready = []
    this.#head = 0
    if (this.#exhausted) return
    for (;;) {
      const {done, value} = await this.#source.next()
      if (done) return
      yield {announced: false, user: value}
    }
  }

  async #announce(): Promise<void> {
    const batch: AnnouncedUser[] = []
    while (batch.length < this.#window) {
      const {done, value} = await this.#source.next()
      if (done) {
        this.#exhausted = true
        break
      }
      batch.push({tokenName: this.#name(value), user: value})
    }
    if (batch.length === 0) return
    const at = new Date().toISOString()
    await this.#run.journal.append(
      ...batch.map(({tokenName, user}) => ({
        at,
        attempt: 1,
        kind: 'create-sent' as const,
        tokenName,
        userId: user.id,
        userName: user.name,
      })),
    )
    if (this.#head > 0) {
      this.#ready = this.#ready.slice(this.#head)
      this.#head = 0
    }
    for (const user of batch) this.#ready.push(user)
  }

  #refill(): void {
    if (this.#announcing || this.#exhausted || this.#error) return
    if (this.#ready.length - this.#head > this.#window / 2) return
    this.#announcing = this.#announce()
      .catch((error: unknown) => {
        this.#error ??= error
      })
      .finally(() => {
        this.#announcing = undefined
      })
  }
}

/**
 * Announced users from the feed in order, as many at once as the limiter admits (no pending task
 * per user), until the feed is empty, the signal fires, or an issue hits a fatal error; then every
 * token handed to the store is fsync'd. Returns the first fatal error (the caller reports the
 * users never taken, from feed.rest(), before rethrowing it). issue-tokens and rotate both run here.
 */
export async function issueFromFeed(
  issuer: TokenIssuer,
  feed: AnnouncedFeed,
  options: {limiter: AdaptiveLimiter; signal?: AbortSignal},
): Promise<unknown> {
  let fatal: unknown
  await runUnderLimit(
    options.limiter,
    () => feed.next(),
    (next) => issuer.issue(next),
    {signal: options.signal, stop: () => issuer.failed},
  ).catch((error: unknown) => {
    fatal ??= error
  })
  await issuer.drain().catch((error: unknown) => {
    fatal ??= error
  })
  return fatal
}

export function isTransient(error: unknown): boolean {
  return (
    error instanceof OutcomeUnknownError ||
    error instanceof CkanUnreachableError ||
    (error instanceof CkanApiError && (error.status >= 500 || error.status === 429 || error.status === 408))
  )
}

async function pause(round: number): Promise<void> {
  await new Promise((resolve) => {
    setTimeout(resolve, protocolPauseMs(round))
  })
}
