import {readdir} from 'node:fs/promises'

import {openRunFolder, type RunFolder} from '../run/run-folder.js'
import type {CommandRun, RunReportResult, TimelineBin, UnfinishedCommand} from '../report/run-report.js'
import {PASSWORDS_FILE} from '../bundle/passwords-csv.js'
import {DEFAULT_SUFFIX} from './bundle.js'

export type ReportOptions = {
  /** Write the run's page here (one self-contained HTML file). */
  htmlPath?: string
  /** The run folder (--out of issue-tokens and the others). */
  runDir: string
}

export type {CommandRun, RunReportResult, TimelineBin, UnfinishedCommand} from '../report/run-report.js'

/** Token times have whole seconds (CKAN's created_at as the store keeps it): no step below one second. */
const STEPS_MS = [1, 5, 10, 30, 60, 300, 600, 1800, 3600, 6 * 3600, 86_400].map((seconds) => seconds * 1000)
const MAX_BINS = 60

/**
 * `ckan-migrate report RUN_DIR`: what the run folder says about the run, read-only, for the
 * run's page. Works on a folder a crash left half done: unfinished commands are named with the
 * command that resumes them. Reads the token store only for times, users and services (never a
 * token or jti leaves this function).
 */
export async function reportRun(options: ReportOptions): Promise<RunReportResult> {
  // Loaded while the run folder is read (the charting library takes a while to import).
  const pageModule = options.htmlPath ? import('../report/run-page.js') : undefined
  pageModule?.catch(() => {})
  const run = await openRunFolder(options.runDir, {create: false})
  const result = await summarise(run)
  if (options.htmlPath) result.html = await (await pageModule!).writeRunPage(options.htmlPath, result)
  return result
}

async function summarise(run: RunFolder): Promise<RunReportResult> {
  const commands: CommandRun[] = []
  const open = new Map<string, CommandRun>()
  const configs: RunReportResult['configs'] = []
  const retryTimes: number[] = []
  const failTimes: number[] = []
  const failedUsers = new Set<string>()
  const skippedReason = new Map<string, string>()
  const verified = new Map<string, {ok: boolean; status: string}>()
  let verifyLastAt: null | string = null
  let orphansRevoked = 0
  let settled = 0
  let keysPurged = 0
  let lastBundle: null | Record<string, number> = null
  let lastEventAt: null | string = null
  for await (const entry of run.journal.stream()) {
    lastEventAt = entry.at
    switch (entry.kind) {
      case 'run-started': {
        const started: CommandRun = {command: entry.command, finishedAt: null, startedAt: entry.at, summary: null}
        commands.push(started)
        open.set(entry.command, started)
        break
      }
      case 'run-finished': {
        const started = open.get(entry.command)
        if (started) {
          started.finishedAt = entry.at
          started.summary = entry.summary
          open.delete(entry.command)
        } else {
          commands.push({command: entry.command, finishedAt: entry.at, startedAt: entry.at, summary: entry.summary})
        }
        if (entry.command === 'bundle') lastBundle = entry.summary
        break
      }
      case 'create-sent': {
        if (entry.attempt > 1) retryTimes.push(Date.parse(entry.at))
        break
      }
      case 'create-settled': {
        settled += 1
        break
      }
      case 'token-orphan-revoked': {
        orphansRevoked += 1
        break
      }
      case 'user-failed': {
        failTimes.push(Date.parse(entry.at))
        failedUsers.add(entry.userId)
        break
      }
      case 'user-skipped': {
        skippedReason.set(entry.userId, entry.reason)
        break
      }
      case 'token-verified': {
        verified.set(entry.jtiFingerprint, {ok: entry.ok, status: entry.status})
        verifyLastAt = entry.at
        break
      }
      case 'config-rewritten': {
        configs.push({at: entry.at, backupPath: entry.backupPath, configPath: entry.configPath, keys: entry.keys})
        break
      }
      case 'keys-purged': {
        keysPurged += entry.count
        break
      }
      default:
    }
  }

  const issuedTimes: number[] = []
  const users = new Set<string>()
  const serviceTokens: RunReportResult['serviceTokens'] = []
  let revoked = 0
  for await (const token of run.streamTokens()) {
    if (token.revokedAt) revoked += 1
    if (token.source === 'rewrite-config') {
      serviceTokens.push({
        createdAt: token.createdAt,
        revoked: token.revokedAt !== undefined,
        service: token.service ?? 'service',
        userName: token.userName,
      })
      continue
    }
    issuedTimes.push(Date.parse(token.createdAt))
    users.add(token.userId)
  }
  for (const user of users) failedUsers.delete(user)
  for (const user of users) skippedReason.delete(user)

  const lock = await run.lockHolder()
  const unfinished = [...open.values()].map((command) =>
    describeUnfinished(run, command, {
      issued: issuedTimes.length,
      lastEventAt,
      running: lock?.alive === true && lock.command === command.command,
    }),
  )
  const skipped: Record<string, number> = {}
  for (const reason of skippedReason.values()) skipped[reason] = (skipped[reason] ?? 0) + 1
  const byStatus: Record<string, number> = {}
  let ok = 0
  for (const check of verified.values()) {
    if (check.ok) ok += 1
    else byStatus[check.status] = (byStatus[check.status] ?? 0) + 1
  }
  const firstAt = issuedTimes.length > 0 ? issuedTimes.reduce((a, b) => Math.min(a, b)) : null
  const lastAt = issuedTimes.length > 0 ? issuedTimes.reduce((a, b) => Math.max(a, b)) : null
  const spanMinutes = firstAt !== null && lastAt !== null ? (lastAt - firstAt) / 60_000 : 0
  const state: RunReportResult['state'] =
    commands.length === 0 ? 'empty' : lock?.alive ? 'running' : unfinished.length > 0 ? 'unfinished' : 'finished'
  return {
    bundles: await bundleFigures(run, lastBundle),
    commands,
    configs,
    createdAt: run.meta.createdAt,
    html: null,
    keysPurged,
    lock,
    runFolder: run.path,
    runId: run.meta.runId,
    serviceTokens,
    site: run.meta.site,
    state,
    tokens: {
      firstAt: firstAt === null ? null : new Date(firstAt).toISOString(),
      issued: issuedTimes.length,
      lastAt: lastAt === null ? null : new Date(lastAt).toISOString(),
      perMinute: spanMinutes > 0 ? Math.round((issuedTimes.length / spanMinutes) * 10) / 10 : null,
      retries: retryTimes.length,
      revoked,
      skipped,
      timeline: timeline({failed: failTimes, issued: issuedTimes, retries: retryTimes}),
      unknownOutcomes: {orphansRevoked, settled},
      users: users.size,
      usersFailed: failedUsers.size,
    },
    unfinished,
    verify: {byStatus, checked: verified.size, failed: verified.size - ok, lastAt: verifyLastAt, ok},
  }
}

/** The flags each command needs besides --out that a run folder cannot hold (credentials, files). */
const RESUME_FLAGS: Record<string, string> = {
  bundle: '--server-cert <site.pem>',
  'issue-tokens': '--ckan-url {url} --api-key-file <sysadmin key file>',
  'purge-keys': '--ckan-ini <ckan.ini>',
  revoke: '--ckan-url {url} --api-key-file <sysadmin key file>',
  'rewrite-config': '--ckan-ini <ckan.ini> --ckan-url {url} --api-key-file <sysadmin key file>',
  verify: '',
}

function describeUnfinished(
  run: RunFolder,
  command: CommandRun,
  context: {issued: number; lastEventAt: null | string; running: boolean},
): UnfinishedCommand {
  const flags = (RESUME_FLAGS[command.command] ?? '').replace('{url}', run.meta.site.ckanUrl)
  const resume = `ckan-migrate ${command.command} --out ${run.path}${flags ? ` ${flags}` : ''}`
  const stopped = context.running
    ? 'is running now (it holds the run folder lock)'
    : `started at ${command.startedAt} and never finished (last journal entry ${context.lastEventAt ?? 'none'}): it was killed or interrupted`
  const progress =
    command.command === 'issue-tokens'
      ? ` ${context.issued} tokens are safely stored; the resume asks CKAN about every create whose answer was lost and issues the rest exactly once.`
      : ' Running it again with the same flags picks up where it stopped.'
  return {
    command: command.command,
    detail: `${command.command} ${stopped}.${progress}`,
    resume,
    startedAt: command.startedAt,
  }
}

async function bundleFigures(run: RunFolder, last: null | Record<string, number>): Promise<RunReportResult['bundles']> {
  const folder = run.file('bundles')
  let names: string[] = []
  try {
    names = await readdir(folder)
  } catch {}
  return {
    files: names.filter((name) => name.endsWith(DEFAULT_SUFFIX)).length,
    folder,
    kept: last?.kept ?? null,
    passwordsFile: names.includes(PASSWORDS_FILE),
    written: last?.written ?? null,
  }
}

/** Counts per time bin, the bin width the smallest step giving at most MAX_BINS bins. */
function timeline(times: {failed: number[]; issued: number[]; retries: number[]}): TimelineBin[] {
  const all = [...times.issued, ...times.retries, ...times.failed].filter((time) => Number.isFinite(time))
  if (all.length === 0) return []
  let min = Infinity
  let max = -Infinity
  for (const time of all) {
    if (time < min) min = time
    if (time > max) max = time
  }
  const step = STEPS_MS.find((candidate) => (max - min) / candidate < MAX_BINS) ?? STEPS_MS.at(-1)!
  const first = Math.floor(min / step) * step
  const count = Math.floor((max - first) / step) + 1
  const bins = Array.from({length: count}, (_, index) => ({
    failed: 0,
    issued: 0,
    retries: 0,
    start: first + index * step,
  }))
  const add = (list: number[], key: 'failed' | 'issued' | 'retries') => {
    for (const time of list) if (Number.isFinite(time)) bins[Math.floor((time - first) / step)]![key] += 1
  }
  add(times.issued, 'issued')
  add(times.retries, 'retries')
  add(times.failed, 'failed')
  return bins.map((bin) => ({
    end: new Date(bin.start + step).toISOString(),
    failed: bin.failed,
    issued: bin.issued,
    retries: bin.retries,
    start: new Date(bin.start).toISOString(),
  }))
}
