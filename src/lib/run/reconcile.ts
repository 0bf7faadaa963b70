import type {AttemptBudget, CkanApiClient} from '../site/ckan-api-client.js'
import type {JournalEntry, RunFolder} from './run-folder.js'

/** What reconciliation needs from the API client. */
export type ReconcileClient = Pick<CkanApiClient, 'listApiTokens' | 'revokeApiToken'>

export type UnsettledUser = {userId: string; userName: string}

/**
 * Users for whom the journal holds an api_token_create whose outcome nothing accounts for: more
 * `create-sent` entries than `token-issued` ones since their last `create-settled`. CKAN may hold
 * a token of this run for them that we never received (a timeout, a reset, a kill -9, or a commit
 * that landed after an earlier check).
 */
export function unsettledCreates(entries: Iterable<JournalEntry>): Map<string, UnsettledUser> {
  const open = new Map<string, UnsettledUser & {count: number}>()
  for (const entry of entries) countCreate(open, entry)
  return unsettledOf(open)
}

/** unsettledCreates() over a streamed journal: only users with open creates are kept in memory. */
export async function unsettledCreatesFrom(entries: AsyncIterable<JournalEntry>): Promise<Map<string, UnsettledUser>> {
  const open = new Map<string, UnsettledUser & {count: number}>()
  for await (const entry of entries) countCreate(open, entry)
  return unsettledOf(open)
}

function countCreate(open: Map<string, UnsettledUser & {count: number}>, entry: JournalEntry): void {
  if (entry.kind === 'create-sent') {
    const current = open.get(entry.userId)
    if (current) current.count += 1
    else open.set(entry.userId, {count: 1, userId: entry.userId, userName: entry.userName})
  } else if (entry.kind === 'token-issued') {
    const current = open.get(entry.userId)
    // A user whose creates are all accounted for needs no memory (a 100k-user journal stays small).
    if (current && --current.count <= 0) open.delete(entry.userId)
  } else if (entry.kind === 'create-settled') {
    open.delete(entry.userId)
  }
}

function unsettledOf(open: Map<string, UnsettledUser & {count: number}>): Map<string, UnsettledUser> {
  const result = new Map<string, UnsettledUser>()
  for (const [userId, {count, userName}] of open) if (count > 0) result.set(userId, {userId, userName})
  return result
}

export type ReconcileOptions = {
  /** The attempts left for the user's token (token-issuer.ts); each call's own when absent. */
  budget?: AttemptBudget
  /**
   * Record `create-settled` afterwards: only when no create for the user can still be in flight
   * (at the start of a run, after the last request of a run), so a later commit cannot follow.
   */
  settle: boolean
  /** jtis in the run's token store (read from the store when absent). */
  storedJtis?: ReadonlySet<string>
  userId: string
  userName: string
}

/**
 * Reconciles an api_token_create whose outcome is unknown: lists the user's tokens and revokes
 * every token of this run (its name carries the run id) that is not in our store. CKAN never shows
 * a token twice, so a token we did not receive cannot be adopted; revoking it and creating a new
 * one is the only way to end with exactly one working token that we hold. Each revoke is
 * journaled (`token-orphan-revoked`, fingerprint only). Returns how many were revoked.
 */
export async function reconcileUnknownCreate(
  client: ReconcileClient,
  run: RunFolder,
  options: ReconcileOptions,
): Promise<number> {
  const runId = run.meta.runId
  const stored = options.storedJtis ?? new Set((await run.readTokens()).map((token) => token.jti.reveal()))
  let revoked = 0
  for (const token of await client.listApiTokens(options.userId, options.budget)) {
    if (!token.name.includes(runId) || stored.has(token.id.reveal())) continue
    await client.revokeApiToken(token.id, options.budget)
    revoked += 1
    await run.record({
      jtiFingerprint: token.id.fingerprint(),
      kind: 'token-orphan-revoked',
      tokenName: token.name,
      userId: options.userId,
      userName: options.userName,
    })
  }
  if (options.settle) await run.record({kind: 'create-settled', userId: options.userId, userName: options.userName})
  return revoked
}
