import {rm} from 'node:fs/promises'
import {join} from 'node:path'
import pLimit from 'p-limit'

import {createLimiter, DEFAULT_MAX_CONCURRENCY} from '../site/adaptive-limit.js'
import {type ApiTokenSummary, CkanApiError, type CkanApiClient} from '../site/ckan-api-client.js'
import type {CkanUserRow} from '../site/user-selection.js'
import {decodeJwtPayload} from '../site/jwt.js'
import {readCredential} from '../site/credential.js'
import {describeError, EXIT_CODES, MigrateError} from '../errors.js'
import {type AccessBundleEncryption, BundleReadError, readAccessBundle} from '../bundle/bundle-writer.js'
import {type CsvColumn, neutraliseCell, writeCsvReport} from '../fs/csv-report.js'
import {checkRunUsers} from '../run/run-tokens.js'
import {openRunFolder, type RunFolder, type RunToken} from '../run/run-folder.js'
import {writeSecretFile} from '../fs/secret-file.js'
import {readConfigFile, replaceConfigFile} from '../services/config-file-writer.js'
import {SERVICE_CATALOG} from '../services/service-catalog.js'
import {preflightSite} from '../site/site-preflight.js'
import {confirmSiteElsewhere} from '../run/site-identity.js'
import type {TokenHeader} from '../site/token-header.js'
import {AnnouncedFeed, issueFromFeed, TokenIssuer, type UserOutcome} from '../run/token-issuer.js'
import {ckanUtc, type TokenHolder, tokenHolders} from '../run/token-lineage.js'
import {lastVerified} from './adoption.js'
import {PASSWORDS_FILE, readPasswordsCsv} from '../bundle/passwords-csv.js'
import {bundleAccess, DEFAULT_SUFFIX} from './bundle.js'

export const ROTATE_REPORT = 'rotate-report.csv'
export const ROTATE_FINISH_REPORT = 'rotate-finish-report.csv'

const DAY = 86_400_000
/**
 * The default policy, when no selection is given: rotate tokens older than 335 days or expiring
 * within 30 days, give successors 365 days where expire_api_token is on (as the seeds' key
 * server signs its keys), and revoke a predecessor 14 days after its successor was made unless
 * the successor was used sooner.
 */
export const DEFAULT_POLICY = {
  expiresInDays: 365,
  expiringWithinMs: 30 * DAY,
  graceMs: 14 * DAY,
  olderThanMs: 335 * DAY,
}
/** Successors' names: the run id (how reconciliation finds the run's tokens) and that they are successors. */
export const ROTATED_TOKEN_NAME = 'ckan-migrate rotated {date} {run}'

export type RotateOptions = {
  all: boolean
  /** --allow-other-url: --ckan-url may be another address of the run's site (site-identity.ts). */
  allowOtherUrl?: boolean
  apiKeyFile?: string
  caCertPath?: string
  ckanUrl?: URL
  /** How many requests at once: 'auto' (the adaptive limiter) or a fixed number; see site/adaptive-limit.ts. */
  concurrency: 'auto' | number
  dryRun: boolean
  latencyBudget?: number
  maxConcurrency?: number
  env?: NodeJS.ProcessEnv
  expiresIn?: number
  expiringWithinMs?: number
  /** --header-name (token-header.ts). */
  headerName?: string
  /** `--finish`: revoke predecessors whose successor was used or whose grace period is over. */
  finish: boolean
  graceMs?: number
  now?: () => Date
  olderThanMs?: number
  out: string
  signal?: AbortSignal
  timeoutMs?: number
  /** Seconds per --expires-in step. */
  unit?: number
  /** Names or ids of users, or service names (xloader, datapusher, …). */
  users?: string[]
}

export type RotateOutcome =
  | 'failed'
  | 'held'
  | 'kept'
  | 'pending'
  | 'predecessor revoked'
  | 'revoked'
  | 'rotated'
  | 'would revoke predecessor'
  | 'would rotate'

export type RotateRow = {
  kind: TokenHolder['kind']
  label: string
  outcome: RotateOutcome
  predecessorFingerprint: string
  reason: string
  successorFingerprint: string
  successorCreatedAt: string
  successorExpiresAt: string
  userId: string
}

export type RotateResult = {
  counts: Record<string, number>
  dryRun: boolean
  finish: boolean
  /** Where config files were switched to a service's successor. */
  configsUpdated: string[]
  /** Bundles rewritten with a successor. */
  bundlesWritten: number
  policy: {all: boolean; expiringWithinDays: null | number; graceDays: number; olderThanDays: null | number}
  /** A few holders that need attention (failed, held), for the summary; the report has all. */
  attention: Array<{label: string; outcome: RotateOutcome; reason: string}>
  reportPath: string | null
  runId: string
  warnings: string[]
}

const COLUMNS: ReadonlyArray<CsvColumn<RotateRow>> = [
  {header: 'user_id', value: (row) => row.userId},
  {header: 'name', value: (row) => (row.kind === 'person' ? row.label : '')},
  {header: 'service', value: (row) => (row.kind === 'service' ? row.label : '')},
  {header: 'outcome', value: (row) => (row.reason ? `${row.outcome}: ${row.reason}` : row.outcome)},
  {header: 'predecessor_fingerprint', value: (row) => row.predecessorFingerprint},
  {header: 'successor_fingerprint', value: (row) => row.successorFingerprint},
  {header: 'successor_created_at', value: (row) => row.successorCreatedAt},
  {header: 'successor_expires_at', value: (row) => row.successorExpiresAt},
]

/** `300d`, `12h`, `30m`, `45s` (or a bare number of days) as milliseconds. */
export function parseDuration(flag: string, value: string): number {
  const match = /^\s*(\d+)\s*([dhms]?)\s*$/.exec(value)
  if (!match) {
    throw new MigrateError(`${flag} ${JSON.stringify(value)} is not a duration`, {
      exitCode: EXIT_CODES.badInput,
      suggestion: `Write a number and a unit: d (days), h, m or s, e.g. ${flag} 14d.`,
    })
  }
  const unit = {'': DAY, d: DAY, h: 3_600_000, m: 60_000, s: 1000}[match[2] as '' | 'd' | 'h' | 'm' | 's']
  return Number(match[1]) * unit
}

/**
 * Token rotation in CKAN's model (one JWT secret, no key ids): a successor per selected token of
 * the run, made with issue-tokens' exactly-once protocol (TokenIssuer: journal, durable store,
 * reconciliation; the successor is stored with its predecessor's jti, so a rerun never makes a
 * second one), fresh bundles for people who had one, and each service's config switched to its
 * successor atomically. `--finish` revokes predecessors once the successor was used or the grace
 * period is over; a service's only after its config holds the successor and the old token is no
 * longer used.
 */
export async function rotateTokens(options: RotateOptions): Promise<RotateResult> {
  const env = options.env ?? process.env
  const now = options.now ?? (() => new Date())
  const warnings: string[] = []
  if ((options.expiresIn === undefined) !== (options.unit === undefined)) {
    throw new MigrateError('--expires-in and --unit go together', {
      exitCode: EXIT_CODES.badInput,
      suggestion: 'Pass both, e.g. --expires-in 365 --unit day.',
    })
  }
  const run = await openRunFolder(options.out, {
    allowOtherUrl: options.allowOtherUrl,
    create: false,
    site: options.ckanUrl ? {ckanUrl: options.ckanUrl.href} : undefined,
  })
  const runTokens = await run.readTokens()
  const holders = tokenHolders(runTokens)
  const wanted = selectNamed(holders, options.users)
  const credential = await readCredential({env, file: options.apiKeyFile})
  if (credential.warning) warnings.push(credential.warning)
  const site = await preflightSite({
    caCertPath: options.caCertPath,
    ckanUrl: options.ckanUrl ?? new URL(run.meta.site.ckanUrl),
    credential,
    env,
    headerName: options.headerName,
    recordedHeader: await run.tokenHeader(),
    signal: options.signal,
    timeoutMs: options.timeoutMs,
  })
  const {client} = site
  warnings.push(...site.warnings)
  try {
    const elsewhere = {run, siteUserName: site.siteUserName, sysadmin: client, tokens: runTokens}
    await confirmSiteElsewhere({...elsewhere, command: 'rotate', record: false})
    if (run.otherUrl && !options.dryRun) {
      await run.lock('rotate')
      try {
        await confirmSiteElsewhere({...elsewhere, command: options.finish ? 'rotate --finish' : 'rotate', record: true})
      } finally {
        await run.unlock()
      }
    }
  } catch (error) {
    await client.close()
    throw error
  }
  const defaults = !options.all && !options.users && !options.olderThanMs && !options.expiringWithinMs
  const policy = {
    all: options.all,
    expiringWithinMs: defaults ? DEFAULT_POLICY.expiringWithinMs : options.expiringWithinMs,
    graceMs: options.graceMs ?? DEFAULT_POLICY.graceMs,
    olderThanMs: defaults ? DEFAULT_POLICY.olderThanMs : options.olderThanMs,
  }
  const ownJti = credential.kind === 'token' ? decodeJwtPayload(credential.secret)?.jti : undefined
  const context = {client, header: site.header, holders, now, options, ownJti, policy, run, wanted, warnings}
  try {
    return options.finish ? await finishRotation(context) : await startRotation({...context, site})
  } finally {
    await client.close()
  }
}

type Context = {
  client: CkanApiClient
  /** The header CKAN accepted the credential in, recorded in the run folder. */
  header: TokenHeader
  holders: TokenHolder[]
  now: () => Date
  options: RotateOptions
  /** The jti of the token this command runs with: never revoked under its feet. */
  ownJti?: string
  policy: {all: boolean; expiringWithinMs?: number; graceMs: number; olderThanMs?: number}
  run: RunFolder
  wanted: Set<string> | undefined
  warnings: string[]
}

function describePolicy(policy: Context['policy']): RotateResult['policy'] {
  const days = (ms: number | undefined) => (ms === undefined ? null : ms / DAY)
  return {
    all: policy.all,
    expiringWithinDays: days(policy.expiringWithinMs),
    graceDays: policy.graceMs / DAY,
    olderThanDays: days(policy.olderThanMs),
  }
}

/** --users: every name must hold a token of the run (a user name, id, or a service name). */
function selectNamed(holders: TokenHolder[], users: string[] | undefined): Set<string> | undefined {
  if (!users) return undefined
  const names = [
    ...checkRunUsers(
      users,
      new Set(
        holders.flatMap((holder) => [
          holder.label,
          holder.userId,
          ...(holder.kind === 'person' ? [holder.userName] : []),
        ]),
      ),
      'Name users (names or ids) or services (xloader, datapusher, …) with a token in this run.',
    ),
  ]
  return new Set(names)
}

function isNamed(holder: TokenHolder, wanted: Set<string>): boolean {
  return (
    wanted.has(holder.label) || wanted.has(holder.userId) || (holder.kind === 'person' && wanted.has(holder.userName))
  )
}

function isSelected(holder: TokenHolder, context: Context): boolean {
  const {policy, wanted} = context
  if (wanted && !isNamed(holder, wanted)) return false
  if (policy.all) return true
  const byAge = policy.olderThanMs !== undefined
  const byExpiry = policy.expiringWithinMs !== undefined
  if (!byAge && !byExpiry) return Boolean(wanted)
  const now = context.now().getTime()
  const token = holder.current
  if (byAge && now - Date.parse(token.createdAt) >= policy.olderThanMs!) return true
  return byExpiry && Boolean(token.expiresAt) && Date.parse(token.expiresAt!) - now <= policy.expiringWithinMs!
}

function rowOf(holder: TokenHolder, outcome: RotateOutcome, reason = '', successor?: RunToken): RotateRow {
  const token = successor ?? holder.current
  const predecessor = successor ? holder.current : holder.predecessor
  return {
    kind: holder.kind,
    label: holder.label,
    outcome,
    predecessorFingerprint: predecessor?.jti.fingerprint() ?? '',
    reason,
    successorCreatedAt: predecessor ? token.createdAt : '',
    successorExpiresAt: predecessor ? (token.expiresAt ?? '') : '',
    successorFingerprint: predecessor ? token.jti.fingerprint() : '',
    userId: holder.userId,
  }
}

function userRow(holder: TokenHolder): CkanUserRow {
  return {
    email: null,
    hasLegacyKey: false,
    id: holder.userId,
    name: holder.userName,
    state: 'active',
    sysadmin: false,
  }
}

async function startRotation(context: Context & {site: {status: {extensions: string[]}}}): Promise<RotateResult> {
  const {client, options, run, warnings} = context
  const expiring = context.site.status.extensions.includes('expire_api_token')
  let lifetime: {expiresIn?: number; unit?: number} = {}
  if (expiring) {
    lifetime =
      options.expiresIn === undefined
        ? {expiresIn: DEFAULT_POLICY.expiresInDays, unit: 86_400}
        : {expiresIn: options.expiresIn, unit: options.unit}
  } else if (options.expiresIn !== undefined) {
    warnings.push('--expires-in is ignored: the expire_api_token plugin is not enabled, so CKAN tokens do not expire.')
  }
  const rows = new Map<string, RotateRow>()
  const toRotate: TokenHolder[] = []
  for (const holder of context.holders) {
    if (context.wanted && !isNamed(holder, context.wanted)) continue
    if (holder.current.revokedAt) rows.set(holder.key, rowOf(holder, 'revoked', `revoked ${holder.current.revokedAt}`))
    else if (holder.predecessor)
      rows.set(holder.key, rowOf(holder, 'pending', 'the predecessor is revoked by rotate --finish'))
    else if (isSelected(holder, context)) {
      toRotate.push(holder)
      rows.set(holder.key, rowOf(holder, 'would rotate'))
    } else rows.set(holder.key, rowOf(holder, 'kept'))
  }
  const result = (reportPath: null | string, extra: Partial<RotateResult> = {}): RotateResult => {
    const list = [...rows.values()]
    return {
      attention: list
        .filter((row) => row.outcome === 'failed')
        .slice(0, 10)
        .map((row) => ({label: row.label, outcome: row.outcome, reason: row.reason})),
      bundlesWritten: 0,
      configsUpdated: [],
      counts: countOutcomes(list),
      dryRun: options.dryRun,
      finish: false,
      policy: describePolicy(context.policy),
      reportPath,
      runId: run.meta.runId,
      warnings,
      ...extra,
    }
  }
  if (options.dryRun) return result(null)

  await run.lock('rotate')
  const configsUpdated: string[] = []
  let fatal: unknown
  try {
    await run.record({command: 'rotate', dryRun: false, kind: 'run-started'})
    await run.recordTokenHeader(context.header, 'rotate')
    const settings = {date: context.now().toISOString().slice(0, 10), template: ROTATED_TOKEN_NAME, ...lifetime}
    const people = toRotate.filter((holder) => holder.kind === 'person')
    const predecessors = new Map(people.map((holder) => [holder.userId, holder.current]))
    const byUser = new Map(people.map((holder) => [holder.userId, holder]))
    const record = (outcome: UserOutcome) => {
      const holder = byUser.get(outcome.user.id)!
      if (outcome.outcome === 'failed') rows.set(holder.key, rowOf(holder, 'failed', outcome.reason ?? ''))
      else if (outcome.outcome === 'issued')
        rows.set(holder.key, {...rowOf(holder, 'rotated'), ...successorCells(holder, outcome)})
    }
    const held = await heldByUser(run)
    const issuer = await TokenIssuer.create(
      run,
      client,
      {
        ...settings,
        heldJtis: (userId) => held.get(userId),
        predecessorOf: (user) => ({predecessorJti: predecessors.get(user.id)!.jti}),
      },
      {maxStoring: width(options) * 4, onDone: record},
    )
    const limiter = createLimiter(options)
    // Creates an earlier run left unaccounted for (kill -9, timeouts): reconciled before any new one.
    await issuer.settle(limiter)
    const feed = new AnnouncedFeed(
      run,
      (async function* () {
        yield* people.map(userRow)
      })(),
      Math.max(64, width(options) * 8),
      (user) => issuer.tokenName(user),
    )
    fatal = await issueFromFeed(issuer, feed, {limiter, signal: options.signal})
    const unsent: CkanUserRow[] = []
    for await (const {announced, user} of feed.rest()) if (announced) unsent.push(user)
    if (!fatal) await issuer.settle(limiter, unsent)

    // Services one at a time, after every person's create has ended: they share the site user,
    // and a reconciliation must never run while another create for that user is in flight.
    for (const holder of toRotate.filter((entry) => entry.kind === 'service')) {
      if (fatal || options.signal?.aborted) break
      fatal = await rotateService(context, holder, settings, (outcome) => {
        if (outcome.outcome === 'failed') rows.set(holder.key, rowOf(holder, 'failed', outcome.reason ?? ''))
        else if (outcome.outcome === 'issued')
          rows.set(holder.key, {...rowOf(holder, 'rotated'), ...successorCells(holder, outcome)})
      })
    }
    await run.journal.flush()
    // Every service whose successor is stored gets its config switched, this run's and an earlier one's.
    if (!fatal) {
      const after = tokenHolders(await run.readTokens())
      for (const holder of after.filter((entry) => entry.kind === 'service' && entry.predecessor))
        configsUpdated.push(...(await switchServiceConfig(run, holder, warnings)))
    }
    await run.record({command: 'rotate', kind: 'run-finished', summary: countOutcomes([...rows.values()])})
  } finally {
    await run.close()
    await run.unlock()
  }
  if (fatal) throw fatal
  // Fresh bundles (bundle takes the run's lock itself) for people who had one.
  const bundlesWritten = options.signal?.aborted ? 0 : await rebundle(run, warnings)
  const reportPath = run.file(ROTATE_REPORT)
  await writeCsvReport(reportPath, COLUMNS, sortRows([...rows.values()]))
  return result(reportPath, {bundlesWritten, configsUpdated: [...new Set(configsUpdated)], dryRun: false})
}

function successorCells(holder: TokenHolder, outcome: UserOutcome): Partial<RotateRow> {
  return {
    predecessorFingerprint: holder.current.jti.fingerprint(),
    successorCreatedAt: outcome.createdAt ?? '',
    successorExpiresAt: outcome.expiresAt ?? '',
    successorFingerprint: outcome.jtiFingerprint ?? '',
  }
}

/** One service's successor, through its own TokenIssuer (so the stored token carries the service). */
async function rotateService(
  context: Context,
  holder: TokenHolder,
  settings: {date: string; expiresIn?: number; template: string; unit?: number},
  onDone: (outcome: UserOutcome) => void,
): Promise<unknown> {
  const {run} = context
  // Read now: the service user holds the other services' tokens too (and successors made moments ago).
  const held = await heldByUser(run)
  const issuer = await TokenIssuer.create(
    run,
    context.client,
    {
      ...settings,
      heldJtis: (userId) => held.get(userId),
      predecessorOf: () => ({predecessorJti: holder.current.jti, service: holder.label, source: 'rewrite-config'}),
      template: `ckan-migrate ${holder.label} rotated {date} {run}`,
    },
    {maxStoring: 1, onDone},
  )
  const user = userRow(holder)
  const tokenName = issuer.tokenName(user)
  await run.record({attempt: 1, kind: 'create-sent', tokenName, userId: user.id, userName: user.name})
  try {
    await issuer.issue({tokenName, user})
    await issuer.drain()
  } catch (error) {
    return error
  }
  await issuer.settle(createLimiter({concurrency: 1}))
  return undefined
}

/** Every stored token's jti by user: what reconciliation must never revoke while rotating. */
async function heldByUser(run: RunFolder): Promise<Map<string, Set<string>>> {
  const held = new Map<string, Set<string>>()
  for await (const token of run.streamTokens()) {
    const jtis = held.get(token.userId)
    if (jtis) jtis.add(token.jti.reveal())
    else held.set(token.userId, new Set([token.jti.reveal()]))
  }
  return held
}

/**
 * Switches every config file rewrite-config wrote (its `config-rewritten` journal entries) from
 * a service's predecessor to its successor: the token's text is replaced where it stands, nothing
 * else changes, and the file is replaced atomically (temporary file, fsync, rename; kept mode and
 * owner; refused if it changed meanwhile). Returns the files changed.
 */
async function switchServiceConfig(run: RunFolder, holder: TokenHolder, warnings: string[]): Promise<string[]> {
  const predecessor = holder.predecessor!
  const files = await serviceConfigFiles(run)
  const changed: string[] = []
  let holdsSuccessor = false
  for (const path of files) {
    const file = await readConfigFile(path, 'config file')
    const old = predecessor.token.reveal()
    if (!file.text.includes(old)) {
      if (file.text.includes(holder.current.token.reveal())) holdsSuccessor = true
      continue
    }
    await replaceConfigFile(file, file.text.replaceAll(old, holder.current.token.reveal()))
    holdsSuccessor = true
    const definition = SERVICE_CATALOG.find((entry) => entry.service === holder.label)
    await run.record({
      backupPath: null,
      configPath: file.path,
      keys: definition ? [definition.configKey] : [],
      kind: 'config-rewritten',
    })
    changed.push(file.path)
  }
  if (!holdsSuccessor)
    warnings.push(
      `No config file rewrite-config wrote holds ${holder.label}'s token (${predecessor.token.fingerprint()}): put its successor (${holder.current.token.fingerprint()}, in the run's token store) where ${holder.label} reads it; rotate --finish keeps the old token until then.`,
    )
  return changed
}

async function serviceConfigFiles(run: RunFolder): Promise<string[]> {
  const files = new Set<string>()
  for await (const entry of run.journal.stream()) if (entry.kind === 'config-rewritten') files.add(entry.configPath)
  return [...files]
}

/** When rotate last switched a config file to the service's successor (its creation when never). */
async function switchedAt(run: RunFolder, holder: TokenHolder): Promise<string> {
  const key = SERVICE_CATALOG.find((entry) => entry.service === holder.label)?.configKey
  let at = holder.current.createdAt
  for await (const entry of run.journal.stream())
    if (entry.kind === 'config-rewritten' && key && entry.keys.includes(key) && entry.at > at) at = entry.at
  return at
}

/** Whether every config file that held the service's predecessor now holds its successor instead. */
async function configSwitched(run: RunFolder, holder: TokenHolder): Promise<boolean> {
  let successor = false
  for (const path of await serviceConfigFiles(run)) {
    const file = await readConfigFile(path, 'config file').catch(() => undefined)
    if (!file) continue
    if (file.text.includes(holder.predecessor!.token.reveal())) return false
    if (file.text.includes(holder.current.token.reveal())) successor = true
  }
  return successor
}

/**
 * Rewrites the bundles of people in a rotation whose predecessor had one (passwords.csv lists
 * them), with the server certificate and encryption of their earlier bundle. bundle keeps those
 * already holding the successor, so a rerun rewrites nothing twice.
 */
async function rebundle(run: RunFolder, warnings: string[]): Promise<number> {
  const bundleDir = run.file('bundles')
  const listed = await readPasswordsCsv(join(bundleDir, PASSWORDS_FILE))
  if (listed.size === 0) return 0
  const pending = tokenHolders(await run.readTokens()).filter(
    (holder) => holder.kind === 'person' && holder.predecessor && listed.has(neutraliseCell(holder.userName)),
  )
  if (pending.length === 0) return 0
  let template: {cert: string; encryption: AccessBundleEncryption; suffix: string} | undefined
  for (const holder of pending) {
    const row = listed.get(neutraliseCell(holder.userName))!
    try {
      const contents = await readAccessBundle(join(bundleDir, row.file), row.password)
      const suffix = row.file.endsWith(DEFAULT_SUFFIX) ? DEFAULT_SUFFIX : (/\.[\w-]+$/.exec(row.file)?.[0] ?? '')
      template = {cert: contents.serverCertPem, encryption: contents.encryption, suffix}
      break
    } catch (error) {
      if (!(error instanceof BundleReadError)) throw error
    }
  }
  if (!template) {
    warnings.push('No earlier bundle could be opened with its password: run bundle again to hand the successors over.')
    return 0
  }
  const certPath = run.file('.rotate-server.cert')
  await writeSecretFile(certPath, template.cert)
  try {
    const result = await bundleAccess({
      // The certificate of an earlier bundle: its CN was checked (or allowed) when that bundle was made.
      allowCertHostMismatch: true,
      dryRun: false,
      encryption: template.encryption,
      force: false,
      out: run.path,
      serverCert: {file: certPath},
      suffix: template.suffix,
      users: pending.map((holder) => holder.userName),
    })
    return result.counts.written
  } finally {
    await rm(certPath, {force: true})
  }
}

/** rotate --finish: the predecessors whose successor was used, or whose grace period is over. */
async function finishRotation(context: Context): Promise<RotateResult> {
  const {client, options, run, warnings} = context
  const pending = context.holders.filter(
    (holder) => holder.predecessor && (!context.wanted || isNamed(holder, context.wanted)),
  )
  const verified = await lastVerified(run)
  const listings = new Map<string, Promise<ApiTokenSummary[]>>()
  const listOf = (userId: string) => {
    let listing = listings.get(userId)
    if (!listing) {
      listing = client.listApiTokens(userId)
      listings.set(userId, listing)
    }
    return listing
  }
  const rows: RotateRow[] = []
  const nowMs = context.now().getTime()
  if (!options.dryRun) await run.lock('rotate')
  try {
    if (!options.dryRun) {
      await run.record({command: 'rotate --finish', dryRun: false, kind: 'run-started'})
      await run.recordTokenHeader(context.header, 'rotate --finish')
    }
    const limit = pLimit(width(options))
    await Promise.all(
      pending.map((holder) =>
        limit(async () => {
          if (options.signal?.aborted) return
          const predecessor = holder.predecessor!
          const successor = holder.current
          let listing: ApiTokenSummary[]
          try {
            listing = await listOf(holder.userId)
          } catch (error) {
            if (!(error instanceof CkanApiError)) throw error
            rows.push(rowOf(holder, 'failed', `could not list the user's tokens: ${describeError(error)}`))
            return
          }
          const find = (token: RunToken) => listing.find((entry) => entry.id.reveal() === token.jti.reveal())
          const now = find(successor)
          if (!now) {
            rows.push(rowOf(holder, 'held', 'the successor is gone from CKAN: the predecessor is kept'))
            return
          }
          const used = ckanUtc(now.lastAccess)
          const ours = verified.get(successor.jti.fingerprint())
          const successorUsed = used !== null && (!ours || used > ours)
          const graceOver = nowMs - Date.parse(successor.createdAt) >= context.policy.graceMs
          const old = find(predecessor)
          const oldUsed = ckanUtc(old?.lastAccess)
          // For a service: used after its config was switched; for a person: after the successor was made.
          const since = holder.kind === 'service' ? await switchedAt(run, holder) : successor.createdAt
          const oldStillUsed = oldUsed !== null && oldUsed > since
          if (holder.kind === 'service') {
            if (!(await configSwitched(run, holder))) {
              rows.push(
                rowOf(holder, 'held', 'its config does not hold the successor yet: run rotate (without --finish)'),
              )
              return
            }
            // The old token was used last (the successor not since): the service still runs with the old config.
            if (oldStillUsed && (!used || used <= oldUsed!)) {
              rows.push(
                rowOf(
                  holder,
                  'held',
                  `the old token was still used at ${oldUsed}, after the config switch, and the successor not since: restart ${holder.label} on every node`,
                ),
              )
              return
            }
          }
          if (context.ownJti !== undefined && context.ownJti === predecessor.jti.reveal()) {
            rows.push(
              rowOf(
                holder,
                'held',
                'it is the --api-key-file credential of this command: run --finish with its successor',
              ),
            )
            return
          }
          if (!successorUsed && !graceOver) {
            rows.push(rowOf(holder, 'held', 'the successor has not been used and the grace period is not over'))
            return
          }
          const why = [
            successorUsed ? `successor used ${used}` : `grace period over`,
            ...(oldStillUsed ? [`the old token was still used at ${oldUsed}`] : []),
          ].join('; ')
          if (options.dryRun) {
            rows.push(rowOf(holder, 'would revoke predecessor', why))
            return
          }
          try {
            // api_token_revoke is idempotent for a sysadmin (an unknown jti is a no-op): a crash
            // between it and the record below only makes the next --finish revoke it again.
            if (old) await client.revokeApiToken(predecessor.jti)
            await run.recordRevoked(predecessor)
            rows.push(rowOf(holder, 'predecessor revoked', why))
          } catch (error) {
            if (!(error instanceof CkanApiError)) throw error
            rows.push(rowOf(holder, 'failed', describeError(error)))
          }
        }),
      ),
    )
    if (!options.dryRun)
      await run.record({command: 'rotate --finish', kind: 'run-finished', summary: countOutcomes(rows)})
  } finally {
    if (!options.dryRun) {
      await run.close()
      await run.unlock()
    }
  }
  const stillUsed = rows.filter((row) => row.reason.includes('still used')).length
  if (stillUsed > 0)
    warnings.push(`${stillUsed} old token(s) were still used after their successor was made (see the report).`)
  const reportPath = options.dryRun ? null : run.file(ROTATE_FINISH_REPORT)
  if (reportPath) await writeCsvReport(reportPath, COLUMNS, sortRows(rows))
  return {
    attention: rows
      .filter((row) => row.outcome === 'failed' || row.outcome === 'held')
      .slice(0, 10)
      .map((row) => ({label: row.label, outcome: row.outcome, reason: row.reason})),
    bundlesWritten: 0,
    configsUpdated: [],
    counts: {pending: pending.length, ...countOutcomes(rows)},
    dryRun: options.dryRun,
    finish: true,
    policy: describePolicy(context.policy),
    reportPath,
    runId: run.meta.runId,
    warnings,
  }
}

function countOutcomes(rows: RotateRow[]): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const row of rows) {
    const key = row.outcome.replaceAll(/ (\w)/g, (_, letter: string) => letter.toUpperCase())
    counts[key] = (counts[key] ?? 0) + 1
  }
  return counts
}

function sortRows(rows: RotateRow[]): RotateRow[] {
  return rows.sort((a, b) =>
    a.kind === b.kind ? (a.label < b.label ? -1 : a.label > b.label ? 1 : 0) : a.kind === 'person' ? -1 : 1,
  )
}

/** The most requests rotate may have in flight: the fixed number, or auto's ceiling. */
function width(options: Pick<RotateOptions, 'concurrency' | 'maxConcurrency'>): number {
  return typeof options.concurrency === 'number'
    ? options.concurrency
    : (options.maxConcurrency ?? DEFAULT_MAX_CONCURRENCY)
}
