import {createHash} from 'node:crypto'
import {readFile} from 'node:fs/promises'
import {join, resolve} from 'node:path'
import pLimit from 'p-limit'

import {parseCsv} from '../bundle/passwords.js'

import {
  type Channel,
  type ChannelState,
  DELIVERIES_FILE,
  DeliveryJournal,
  type DeliveryStates,
} from '../deliver/delivery-journal.js'
import {composeMessage, messageIdFor, parseSender, type Sender} from '../deliver/message.js'
import {pause, RateLimiter} from '../deliver/rate-limit.js'
import {planRecipients, type Recipient} from '../deliver/recipients.js'
import {readSmtpSettings, type SmtpSettings, type SmtpSettingsInput} from '../deliver/smtp-settings.js'
import {SmtpSession} from '../deliver/smtp-session.js'
import {INSTRUCTIONS, loadTemplate, type MessageTemplate, renderTemplate} from '../deliver/template.js'
import {EXIT_CODES, MigrateError} from '../errors.js'
import {BundleReadError, readAccessBundle} from '../bundle/bundle-writer.js'
import {neutraliseCell, writeCsvReport} from '../fs/csv-report.js'
import {openRunFolder, type RunFolder} from '../run/run-folder.js'
import {ensureFolderForSecrets, writeFileAtomically} from '../fs/secret-file.js'
import type {Secret} from '../secret.js'
import {PASSWORDS_FILE, peopleTokens, readPasswordsCsv} from '../bundle/passwords-csv.js'

export const DELIVER_REPORT = 'deliver-report.csv'
export const PASSWORD_CHANNEL_FILE = 'password-channel.csv'
export const DRY_RUN_FOLDER = 'deliver-dry-run'
/** What a dry-run .eml shows where the password would be. */
export const PASSWORD_PLACEHOLDER = '[password: only in the real mail]'
/** Once Ctrl-C came, sends still in flight after this long are cut off (their outcome is then recorded). */
const ABORT_GRACE_MS = 1500

export type DeliverOptions = {
  bundleDir?: string
  /** Exactly one second address per user (column of a CSV the admin keeps). */
  contacts?: {column: string; file: string}
  concurrency: number
  database?: {ckanIni?: string; databaseUrl?: string}
  dryRun: boolean
  /** --eml-dir: where --dry-run renders the messages (default: deliver-dry-run/ in the run folder). */
  emlDir?: string
  from: string
  onMessage?: (row: DeliveryRow) => void
  onStart?: (total: number) => void
  onWarning?: (message: string) => void
  out: string
  passwordTemplate?: string
  perMinute: number
  replyTo?: string
  resendUnknown: boolean
  /** Retries of a message the server refused with 4xx or that failed before it went out. */
  retries: number
  retryWaitMs: number
  signal?: AbortSignal
  /** Without it only --dry-run can run (and it checks the login when it is given). */
  smtp?: SmtpSettingsInput
  template?: string
  timeoutMs: number
  users?: readonly string[]
}

/** sent: accepted in this run; already-sent: accepted by an earlier run, not sent again. */
export type ChannelStatus = 'already-sent' | 'failed' | 'not-attempted' | 'sent' | 'skipped' | 'unknown' | 'would-send'

export type DeliveryRow = {
  bundle: {
    messageId: null | string
    queueId: null | string
    reason: null | string
    status: ChannelStatus
  }
  email: null | string
  file: null | string
  /** csv: the password is only in password-channel.csv; mail: also mailed to `password.to`. */
  password: {
    channel: 'csv' | 'mail' | 'none'
    messageId: null | string
    queueId: null | string
    reason: null | string
    status: ChannelStatus | null
    to: null | string
  }
  userName: string
}

export type DeliverResult = {
  counts: {
    alreadySent: number
    failed: number
    notAttempted: number
    passwordMails: number
    sent: number
    skipped: number
    total: number
    unknown: number
    wouldSend: number
  }
  deliveries: DeliveryRow[]
  dryRun: boolean
  /** Dry run: the folder with the rendered messages. */
  emlDir: null | string
  /** Where the addresses came from. */
  emails: 'database' | 'passwords.csv'
  /** password-channel.csv (0600): the passwords, for the admin's second channel. Never shown. */
  passwordChannelFile: null | string
  report: null | string
  smtp: null | string
}

type Job = {
  bundleState: ChannelState | undefined
  /** Already mailed, but the bundle file was rewritten since. */
  changedSinceSent?: boolean
  passwordState: ChannelState | undefined
  recipient: Recipient
  row: DeliveryRow
}

/**
 * Mails each selected person their `.dcor-access` bundle (and, where the admin gave a second
 * address, the password in a second mail), exactly once: every send is journaled before it goes
 * out and its outcome after, so a rerun sends only what no run sent, and reports what it cannot
 * know (a send cut off between handing over the message and the server's reply).
 */
export async function deliverBundles(options: DeliverOptions): Promise<DeliverResult> {
  const warn = (message: string) => options.onWarning?.(message)
  const run = await openRunFolder(options.out, {create: false})
  const tokens = await peopleTokens(run.journal.readAll(), await run.readTokens())
  if (tokens.size === 0) {
    throw new MigrateError(`The run folder ${run.path} holds no tokens for people`, {
      exitCode: EXIT_CODES.badInput,
      suggestion: 'Run issue-tokens and bundle with this --out first.',
    })
  }
  const bundleDir = resolve(options.bundleDir ?? run.file('bundles'))
  const passwords = await readPasswordsCsv(join(bundleDir, PASSWORDS_FILE))
  if (passwords.size === 0) {
    throw new MigrateError(`${join(bundleDir, PASSWORDS_FILE)} is missing or empty: there are no bundles to deliver`, {
      exitCode: EXIT_CODES.badInput,
      suggestion: 'Run bundle with this --out first (or pass the --bundle-dir it wrote).',
    })
  }
  const sender = parseSender(options.from)
  if (options.replyTo !== undefined) parseSender(options.replyTo)
  const templates = {
    bundle: await loadTemplate('bundle', options.template),
    password: await loadTemplate('password', options.passwordTemplate),
  }
  if (!options.smtp && !options.dryRun) {
    throw new MigrateError('No mail server given', {
      exitCode: EXIT_CODES.badInput,
      suggestion: 'Pass --smtp-url smtp://user@mail.example.org:587 (or --dry-run to render the messages only).',
    })
  }
  const smtp = options.smtp ? await readSmtpSettings(options.smtp) : undefined
  for (const message of smtp?.warnings ?? []) warn(message)

  const plan = await planRecipients({
    bundleDir,
    contacts: options.contacts,
    database: options.database,
    passwords,
    tokens,
    users: options.users,
  })
  const journal = new DeliveryJournal(run.file(DELIVERIES_FILE))
  const states = await journal.states()

  const rows: DeliveryRow[] = []
  const jobs: Job[] = []
  const emptyPassword = (): DeliveryRow['password'] => ({
    channel: 'none',
    messageId: null,
    queueId: null,
    reason: null,
    status: null,
    to: null,
  })
  for (const skipped of plan.skipped) {
    const state = states.get(skipped.userName)?.bundle
    const row: DeliveryRow = {
      bundle: fromState(state) ?? {messageId: null, queueId: null, reason: skipped.reason, status: 'skipped'},
      email: skipped.email,
      file: passwords.get(neutraliseCell(skipped.userName))?.file ?? null,
      password: emptyPassword(),
      userName: skipped.userName,
    }
    rows.push(row)
  }
  // Bundles that do not open with their listed password are never sent (a stale passwords.csv).
  const limit = pLimit(8)
  await Promise.all(
    plan.recipients.map((recipient) =>
      limit(async () => {
        const state = states.get(recipient.userName)
        const row: DeliveryRow = {
          bundle: {messageId: null, queueId: null, reason: null, status: 'would-send'},
          email: recipient.email,
          file: recipient.file,
          password: {...emptyPassword(), channel: recipient.passwordTo ? 'mail' : 'csv', to: recipient.passwordTo},
          userName: recipient.userName,
        }
        rows.push(row)
        if (state?.bundle?.state !== 'accepted') {
          const problem = await bundleProblem(recipient.bundlePath, recipient.password)
          if (problem) {
            row.bundle = {messageId: null, queueId: null, reason: problem, status: 'skipped'}
            row.password.channel = 'none'
            return
          }
        }
        jobs.push({bundleState: state?.bundle, passwordState: state?.password, recipient, row})
      }),
    ),
  )
  // A bundle rewritten after it was mailed (bundle --force) is not mailed again; its mailed copy
  // opens with the password listed when it was mailed, which password-channel.csv keeps.
  const changed: string[] = []
  for (const job of jobs) {
    const sent = job.bundleState
    if (sent?.state !== 'accepted' || !sent.attachmentSha256) continue
    const current = await readFile(job.recipient.bundlePath).then(sha256, () => undefined)
    if (current !== sent.attachmentSha256) {
      changed.push(job.recipient.userName)
      job.changedSinceSent = true
    }
  }
  if (changed.length > 0)
    warn(
      `${changed.length} bundle(s) changed since they were mailed (bundle --force?): ${changed.slice(0, 5).join(', ')}${changed.length > 5 ? ', …' : ''}. They are not mailed again; the mailed copies open with the passwords ${PASSWORD_CHANNEL_FILE} listed when they were sent.`,
    )
  rows.sort((a, b) => (a.userName < b.userName ? -1 : a.userName > b.userName ? 1 : 0))
  jobs.sort((a, b) => (a.row.userName < b.row.userName ? -1 : a.row.userName > b.row.userName ? 1 : 0))

  const context: Context = {options, run, sender, smtp, templates}
  if (options.dryRun) return dryRun(context, rows, jobs, plan.source)
  return realRun(context, journal, rows, jobs, plan.source, warn)
}

type Context = {
  options: DeliverOptions
  run: RunFolder
  sender: Sender
  smtp: SmtpSettings | undefined
  templates: {bundle: MessageTemplate; password: MessageTemplate}
}

function fromState(state: ChannelState | undefined, changed = false): DeliveryRow['bundle'] | undefined {
  if (state?.state === 'accepted')
    return {
      messageId: state.messageId,
      queueId: state.queueId,
      reason: changed ? CHANGED_SINCE_SENT : null,
      status: 'already-sent',
    }
  return undefined
}

const CHANGED_SINCE_SENT =
  'the bundle file was rewritten after it was mailed; the mailed copy opens with the password listed when it was sent'

async function bundleProblem(path: string, password: Secret): Promise<string | undefined> {
  try {
    await readAccessBundle(path, password)
    return undefined
  } catch (error) {
    if (!(error instanceof BundleReadError)) throw error
    return error.reason === 'missing'
      ? 'the bundle file is missing (run bundle again)'
      : `the bundle does not open with its password in ${PASSWORDS_FILE} (${error.reason}; run bundle again)`
  }
}

type Prepared = {attachmentSha256?: string; messageId: string; raw: Buffer; subject: string; to: string}

async function prepare(
  context: Context,
  job: Job,
  channel: Channel,
  password: string,
  bundleSubject: string,
): Promise<Prepared> {
  const {recipient} = job
  const site = new URL(context.run.meta.site.ckanUrl)
  const to = channel === 'bundle' ? recipient.email! : recipient.passwordTo!
  const parts = renderTemplate(context.templates[channel], {
    'bundle.file': recipient.file,
    'bundle.subject': bundleSubject,
    'bundle.to': recipient.email!,
    'instructions.7zip': INSTRUCTIONS['7zip'],
    'instructions.dcoraid': INSTRUCTIONS.dcoraid,
    password,
    sender: context.sender.address,
    'site.host': site.hostname,
    'site.url': context.run.meta.site.ckanUrl,
    'user.email': recipient.email!,
    'user.fullname': recipient.fullname ?? recipient.userName,
    'user.name': recipient.userName,
  })
  const messageId = messageIdFor(context.run.meta.runId, channel, recipient.userName, context.sender)
  if (channel === 'bundle') {
    const secret = recipient.password.reveal()
    if (parts.html.includes(secret) || parts.text.includes(secret) || parts.subject.includes(secret)) {
      throw new MigrateError(`The bundle mail for ${JSON.stringify(recipient.userName)} would contain its password`, {
        exitCode: EXIT_CODES.badInput,
        suggestion: 'Check the template and the user data it shows; the password never travels with its bundle.',
      })
    }
  }
  const attachment = channel === 'bundle' ? await readFile(recipient.bundlePath) : undefined
  const raw = await composeMessage({
    ...(attachment ? {attachment: {content: attachment, filename: recipient.file}} : {}),
    messageId,
    parts,
    ...(context.options.replyTo ? {replyTo: context.options.replyTo} : {}),
    sender: context.sender,
    to,
  })
  return {
    ...(attachment ? {attachmentSha256: sha256(attachment)} : {}),
    messageId,
    raw,
    subject: parts.subject,
    to,
  }
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex')
}

function subjectOf(context: Context, job: Job): string {
  return renderTemplate(context.templates.bundle, {
    'site.host': new URL(context.run.meta.site.ckanUrl).hostname,
    'site.url': context.run.meta.site.ckanUrl,
    'user.email': job.recipient.email!,
    'user.fullname': job.recipient.fullname ?? job.recipient.userName,
    'user.name': job.recipient.userName,
    'bundle.file': job.recipient.file,
    sender: context.sender.address,
  }).subject
}

async function dryRun(
  context: Context,
  rows: DeliveryRow[],
  jobs: Job[],
  source: DeliverResult['emails'],
): Promise<DeliverResult> {
  const {options} = context
  // A dry run checks the login too, when it can: nothing is sent.
  if (context.smtp) (await SmtpSession.open({settings: context.smtp, timeoutMs: options.timeoutMs})).close()
  const emlDir = resolve(options.emlDir ?? context.run.file(DRY_RUN_FOLDER))
  const pending = jobs.filter((job) => job.bundleState?.state !== 'accepted' || needsPassword(job, options))
  options.onStart?.(pending.length)
  if (pending.length > 0) await ensureFolderForSecrets(emlDir)
  for (const job of jobs) {
    if (options.signal?.aborted) break
    const {row} = job
    const base = row.file!.replace(/\.[^.]*$/, '')
    if (job.bundleState?.state === 'accepted') {
      row.bundle = fromState(job.bundleState, job.changedSinceSent)!
    } else if (job.bundleState?.state === 'unknown' && !options.resendUnknown) {
      row.bundle = {
        messageId: job.bundleState.messageId,
        queueId: null,
        reason: job.bundleState.reason,
        status: 'unknown',
      }
    } else {
      const prepared = await prepare(context, job, 'bundle', '', '')
      await writeFileAtomically(join(emlDir, `${base}.bundle.eml`), prepared.raw, 0o600)
      row.bundle = {messageId: prepared.messageId, queueId: null, reason: null, status: 'would-send'}
    }
    if (job.recipient.passwordTo) {
      if (job.passwordState?.state === 'accepted') row.password.status = 'already-sent'
      else if (job.passwordState?.state === 'unknown' && !options.resendUnknown) row.password.status = 'unknown'
      else if (row.bundle.status !== 'unknown') {
        const prepared = await prepare(context, job, 'password', PASSWORD_PLACEHOLDER, subjectOf(context, job))
        await writeFileAtomically(join(emlDir, `${base}.password.eml`), prepared.raw, 0o600)
        row.password = {...row.password, messageId: prepared.messageId, status: 'would-send'}
      }
    }
    options.onMessage?.(row)
  }
  interruptedCheck(options.signal, 'Dry run interrupted; nothing was sent.')
  return {
    counts: countRows(rows),
    deliveries: rows,
    dryRun: true,
    emlDir: pending.length > 0 ? emlDir : null,
    emails: source,
    passwordChannelFile: null,
    report: null,
    smtp: context.smtp?.shown ?? null,
  }
}

function needsPassword(job: Job, options: DeliverOptions): boolean {
  if (!job.recipient.passwordTo) return false
  const state = job.passwordState?.state
  return state !== 'accepted' && (state !== 'unknown' || options.resendUnknown)
}

function interruptedCheck(signal: AbortSignal | undefined, message: string): void {
  if (signal?.aborted) {
    throw new MigrateError(message, {
      exitCode: EXIT_CODES.interrupted,
      suggestion: 'Run the same command again: what was sent is recorded and is not sent again.',
    })
  }
}

/** Sessions are reused by the workers; a broken one is dropped, a new one opened on demand. */
class SessionPool {
  readonly #all = new Set<SmtpSession>()
  readonly #idle: SmtpSession[] = []
  readonly #options: {settings: SmtpSettings; timeoutMs: number}

  constructor(options: {settings: SmtpSettings; timeoutMs: number}, first: SmtpSession) {
    this.#options = options
    this.#all.add(first)
    this.#idle.push(first)
  }

  async take(): Promise<SmtpSession> {
    for (let session = this.#idle.pop(); session; session = this.#idle.pop()) {
      if (session.usable) return session
      this.#all.delete(session)
    }
    const session = await SmtpSession.open(this.#options)
    this.#all.add(session)
    return session
  }

  give(session: SmtpSession): void {
    if (session.usable) this.#idle.push(session)
    else this.#all.delete(session)
  }

  /** Ends every session; sends in flight end at once (their outcome is what the journal then records). */
  closeAll(): void {
    for (const session of this.#all) session.close()
    this.#all.clear()
    this.#idle.length = 0
  }
}

type SendResult = {messageId: string; queueId: null | string; reason: null | string; status: ChannelStatus}

async function realRun(
  context: Context,
  journal: DeliveryJournal,
  rows: DeliveryRow[],
  jobs: Job[],
  source: DeliverResult['emails'],
  warn: (message: string) => void,
): Promise<DeliverResult> {
  const {options, run} = context
  const todo = jobs.filter((job) => job.bundleState?.state !== 'accepted' || needsPassword(job, options))
  for (const job of jobs) {
    if (job.bundleState?.state === 'accepted') job.row.bundle = fromState(job.bundleState, job.changedSinceSent)!
    if (job.passwordState?.state === 'accepted') {
      job.row.password = {
        ...job.row.password,
        messageId: job.passwordState.messageId,
        queueId: job.passwordState.queueId,
        status: 'already-sent',
      }
    }
  }
  await run.lock('deliver')
  try {
    return await sendAll(context, journal, rows, jobs, todo, source, warn)
  } finally {
    await run.unlock()
    await run.close()
  }
}

async function sendAll(
  context: Context,
  journal: DeliveryJournal,
  rows: DeliveryRow[],
  jobs: Job[],
  todo: Job[],
  source: DeliverResult['emails'],
  warn: (message: string) => void,
): Promise<DeliverResult> {
  const {options, run} = context
  const settings = context.smtp!
  const signal = options.signal
  let pool: SessionPool | undefined
  let fatal: MigrateError | undefined
  let graceTimer: NodeJS.Timeout | undefined
  const onAbort = () => {
    graceTimer = setTimeout(() => pool?.closeAll(), ABORT_GRACE_MS)
  }
  try {
    if (todo.length > 0) {
      // The first connection checks the server, TLS and the login before anything is journaled.
      pool = new SessionPool(
        {settings, timeoutMs: options.timeoutMs},
        await SmtpSession.open({settings, timeoutMs: options.timeoutMs}),
      )
    }
    await run.record({command: 'deliver', dryRun: false, kind: 'run-started'})
    signal?.addEventListener('abort', onAbort, {once: true})
    options.onStart?.(todo.length)
    const limiter = new RateLimiter(options.perMinute)
    const workers = pLimit(options.concurrency)

    const sendWithRetries = async (job: Job, channel: Channel, bundleSubject: string): Promise<SendResult> => {
      const password = channel === 'password' ? job.recipient.password.reveal() : ''
      let prepared: Prepared
      try {
        prepared = await prepare(context, job, channel, password, bundleSubject)
      } catch (error) {
        if (!(error instanceof MigrateError)) throw error
        return {messageId: '', queueId: null, reason: error.message, status: 'failed'}
      }
      const base = {channel, messageId: prepared.messageId, to: prepared.to, userName: job.recipient.userName}
      let reason = 'not attempted'
      for (let attempt = 1; attempt <= options.retries + 1; attempt += 1) {
        if (fatal || signal?.aborted || !(await limiter.wait(signal)))
          return {messageId: prepared.messageId, queueId: null, reason: 'not attempted', status: 'not-attempted'}
        let session: SmtpSession
        try {
          session = await pool!.take()
        } catch (error) {
          const migrateError = error as MigrateError
          if (migrateError.exitCode !== EXIT_CODES.mailUnreachable) {
            fatal ??= migrateError
            return {messageId: prepared.messageId, queueId: null, reason: migrateError.message, status: 'not-attempted'}
          }
          reason = migrateError.message
          if (attempt <= options.retries) await pause(backoff(options.retryWaitMs, attempt), signal)
          continue
        }
        await journal.record({
          ...base,
          ...(prepared.attachmentSha256 ? {attachmentSha256: prepared.attachmentSha256} : {}),
          attempt,
          kind: 'send-started',
          userId: job.recipient.userId,
        })
        const outcome = await session.send({from: context.sender.address, to: prepared.to}, prepared.raw)
        pool!.give(session)
        switch (outcome.kind) {
          case 'accepted': {
            await journal.record({...base, kind: 'send-accepted', queueId: outcome.queueId, response: outcome.response})
            return {messageId: prepared.messageId, queueId: outcome.queueId, reason: null, status: 'sent'}
          }
          case 'unknown': {
            await journal.record({...base, kind: 'send-unknown', reason: outcome.reason})
            return {messageId: prepared.messageId, queueId: null, reason: outcome.reason, status: 'unknown'}
          }
          case 'refused': {
            await journal.record({
              ...base,
              code: outcome.code,
              kind: 'send-failed',
              permanent: outcome.permanent,
              reason: outcome.reason,
            })
            if (outcome.permanent)
              return {messageId: prepared.messageId, queueId: null, reason: outcome.reason, status: 'failed'}
            reason = outcome.reason
            break
          }
          case 'not-sent': {
            await journal.record({...base, code: null, kind: 'send-failed', permanent: false, reason: outcome.reason})
            reason = outcome.reason
            break
          }
        }
        if (attempt <= options.retries) await pause(backoff(options.retryWaitMs, attempt), signal)
      }
      return {
        messageId: prepared.messageId,
        queueId: null,
        reason: `${reason} (after ${options.retries + 1} attempts; a rerun tries again)`,
        status: 'failed',
      }
    }

    await Promise.all(
      todo.map((job) =>
        workers(async () => {
          const {row} = job
          if (job.bundleState?.state !== 'accepted') {
            if (job.bundleState?.state === 'unknown' && !options.resendUnknown) {
              row.bundle = {
                messageId: job.bundleState.messageId,
                queueId: null,
                reason: job.bundleState.reason,
                status: 'unknown',
              }
            } else {
              const sent = await sendWithRetries(job, 'bundle', '')
              row.bundle = {messageId: sent.messageId, queueId: sent.queueId, reason: sent.reason, status: sent.status}
            }
          }
          const bundleDelivered = row.bundle.status === 'sent' || row.bundle.status === 'already-sent'
          if (job.recipient.passwordTo && row.password.status !== 'already-sent') {
            if (job.passwordState?.state === 'unknown' && !options.resendUnknown) {
              row.password = {
                ...row.password,
                messageId: job.passwordState.messageId,
                reason: job.passwordState.reason,
                status: 'unknown',
              }
            } else if (bundleDelivered) {
              const sent = await sendWithRetries(job, 'password', subjectOf(context, job))
              row.password = {
                ...row.password,
                messageId: sent.messageId,
                queueId: sent.queueId,
                reason: sent.reason,
                status: sent.status,
              }
            } else {
              row.password = {...row.password, reason: 'the bundle mail was not delivered', status: 'not-attempted'}
            }
          }
          options.onMessage?.(row)
        }),
      ),
    )
  } finally {
    signal?.removeEventListener('abort', onAbort)
    clearTimeout(graceTimer)
    pool?.closeAll()
    await journal.close()
  }
  {
    const bundleDir = resolve(options.bundleDir ?? run.file('bundles'))
    const passwordChannelFile = join(bundleDir, PASSWORD_CHANNEL_FILE)
    await writePasswordChannel(passwordChannelFile, jobs)
    const report = run.file(DELIVER_REPORT)
    await writeReport(report, rows)
    const counts = countRows(rows)
    await run.record({
      command: 'deliver',
      kind: 'run-finished',
      summary: {
        alreadySent: counts.alreadySent,
        failed: counts.failed,
        sent: counts.sent,
        skipped: counts.skipped,
        unknown: counts.unknown,
      },
    })
    if (fatal) throw fatal
    interruptedCheck(signal, `Interrupted after ${counts.sent} message(s); the report is ${report}`)
    if (counts.unknown > 0)
      warn(
        `${counts.unknown} message(s) have an unknown outcome (the mail server may have queued them): they are not sent again. Ask the user or the mail server's log; --resend-unknown sends them again.`,
      )
    return {
      counts,
      deliveries: rows,
      dryRun: false,
      emlDir: null,
      emails: source,
      passwordChannelFile,
      report,
      smtp: settings.shown,
    }
  }
}

function backoff(baseMs: number, attempt: number): number {
  return Math.min(baseMs * 2 ** (attempt - 1), 10 * 60_000)
}

function countRows(rows: DeliveryRow[]): DeliverResult['counts'] {
  const count = (status: ChannelStatus) => rows.filter((row) => row.bundle.status === status).length
  const passwordCount = (status: ChannelStatus) => rows.filter((row) => row.password.status === status).length
  return {
    alreadySent: count('already-sent'),
    failed: count('failed') + passwordCount('failed'),
    notAttempted: count('not-attempted'),
    passwordMails: passwordCount('sent'),
    sent: count('sent'),
    skipped: count('skipped'),
    total: rows.length,
    unknown: count('unknown') + passwordCount('unknown'),
    wouldSend: count('would-send'),
  }
}

/**
 * password-channel.csv (0600, in the 0700 bundle folder): one row per person whose bundle mail
 * went out (or may have: unknown), with the password and which bundle it opens, for the admin's
 * second channel (phone, SMS gateway, letter). The only file `deliver` writes a password into.
 */
async function writePasswordChannel(path: string, jobs: Job[]): Promise<void> {
  const delivered = jobs
    .filter((job) => ['already-sent', 'sent', 'unknown'].includes(job.row.bundle.status))
    .map((job) => [
      job.recipient.userName,
      job.recipient.file,
      job.recipient.email ?? '',
      job.row.bundle.status,
      job.row.bundle.messageId ?? '',
      job.recipient.passwordTo ?? '',
      job.row.password.status ?? '',
      job.recipient.password.reveal(),
    ])
  // Rows of users this run did not select stay (read back formula-neutralised; neutralising is
  // idempotent), and so do the rows of bundles rewritten after they were mailed: their password is
  // the one the mailed copy opens with.
  const earlierRows = await readEarlierRows(path)
  const earlierUsers = new Set(earlierRows.map((cells) => cells[0] ?? ''))
  const keep = new Set(
    jobs
      .filter((job) => !job.changedSinceSent || !earlierUsers.has(neutraliseCell(job.recipient.userName)))
      .map((job) => neutraliseCell(job.recipient.userName)),
  )
  const fresh = delivered.filter((cells) => keep.has(neutraliseCell(cells[0]!)))
  const earlier = earlierRows.filter((cells) => !keep.has(cells[0] ?? ''))
  const merged = [...earlier, ...fresh].sort((a, b) => (a[0]! < b[0]! ? -1 : a[0]! > b[0]! ? 1 : 0))
  await writeCsvReport(
    path,
    PASSWORD_CHANNEL_COLUMNS.map((header, index) => ({header, value: (cells: string[]) => cells[index]})),
    merged,
  )
}

const PASSWORD_CHANNEL_COLUMNS = [
  'user',
  'bundle_file',
  'bundle_sent_to',
  'bundle_status',
  'bundle_message_id',
  'password_mailed_to',
  'password_mail_status',
  'password',
] as const

async function readEarlierRows(path: string): Promise<string[][]> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw error
  }
  const rows = parseCsv(text)
  if (rows.shift()?.cells.join(',') !== PASSWORD_CHANNEL_COLUMNS.join(',')) {
    throw new MigrateError(`${path} is not a ${PASSWORD_CHANNEL_FILE} written by ckan-migrate deliver`, {
      exitCode: EXIT_CODES.badInput,
      suggestion: 'Move it away (it may hold passwords of bundles already sent), then run again.',
    })
  }
  return rows.map((row) => row.cells)
}

/** deliver-report.csv in the run folder: every selected user's delivery state; no password, ever. */
async function writeReport(path: string, rows: DeliveryRow[]): Promise<void> {
  await writeCsvReport(
    path,
    [
      {header: 'user', value: (row: DeliveryRow) => row.userName},
      {header: 'email', value: (row: DeliveryRow) => row.email},
      {header: 'bundle_file', value: (row: DeliveryRow) => row.file},
      {header: 'bundle_status', value: (row: DeliveryRow) => row.bundle.status},
      {header: 'bundle_queue_id', value: (row: DeliveryRow) => row.bundle.queueId},
      {header: 'bundle_message_id', value: (row: DeliveryRow) => row.bundle.messageId},
      {header: 'bundle_reason', value: (row: DeliveryRow) => row.bundle.reason},
      {header: 'password_channel', value: (row: DeliveryRow) => row.password.channel},
      {header: 'password_to', value: (row: DeliveryRow) => row.password.to},
      {header: 'password_status', value: (row: DeliveryRow) => row.password.status},
      {header: 'password_queue_id', value: (row: DeliveryRow) => row.password.queueId},
      {header: 'password_reason', value: (row: DeliveryRow) => row.password.reason},
    ],
    rows,
  )
}

export type {DeliveryStates}
