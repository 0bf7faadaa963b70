import type {RunSite} from '../run/run-folder.js'

/** One command's run, from its run-started to its run-finished entry (null while unfinished). */
export type CommandRun = {
  command: string
  finishedAt: null | string
  startedAt: string
  summary: null | Record<string, number>
}

export type UnfinishedCommand = {
  command: string
  /** What the run folder shows of it. */
  detail: string
  /** The command line that resumes it (flags in <angle brackets> are the ones the folder cannot know). */
  resume: string
  startedAt: string
}

export type TimelineBin = {end: string; failed: number; issued: number; retries: number; start: string}

/** What `ckan-migrate report` returns: the `result` of its --json envelope (docs/commands/report.md). */
export type RunReportResult = {
  bundles: {
    /** Bundle files in the run's bundles/ folder. */
    files: number
    folder: string
    /** The last finished bundle run's counts, or null. */
    kept: null | number
    passwordsFile: boolean
    written: null | number
  }
  /** Every command run in the folder, oldest first. */
  commands: CommandRun[]
  /** config-rewritten entries: which files rewrite-config changed, and which settings (never values). */
  configs: Array<{at: string; backupPath: null | string; configPath: string; keys: string[]}>
  createdAt: string
  /** Users whose legacy key purge-keys cleared. */
  keysPurged: number
  /** The lock file: held by a live process (running now) or left by a crash (stale). */
  lock: null | {alive: boolean; command: string; pid: number; since: null | string}
  runFolder: string
  runId: string
  /** Service tokens rewrite-config made (service, its user), never the token. */
  serviceTokens: Array<{createdAt: string; revoked: boolean; service: string; userName: string}>
  site: RunSite
  /** finished: every command that started also finished; running: one holds the lock now; unfinished: a crash or an interrupt left one open. */
  state: 'empty' | 'finished' | 'running' | 'unfinished'
  tokens: {
    firstAt: null | string
    /** Tokens issue-tokens stored (revoked ones included). */
    issued: number
    lastAt: null | string
    /** issued divided by the minutes from the first to the last token (pauses included), or null. */
    perMinute: null | number
    /** Retried creates (attempt 2 and later). */
    retries: number
    revoked: number
    /** Users skipped, by reason (the latest reason per user). */
    skipped: Record<string, number>
    timeline: TimelineBin[]
    /** Creates whose outcome was unknown (a timeout, a crash) and were accounted for on the next attempt. */
    unknownOutcomes: {orphansRevoked: number; settled: number}
    /** Users with a token of the run. */
    users: number
    /** Users issue-tokens gave up on and who still have no token. */
    usersFailed: number
  }
  unfinished: UnfinishedCommand[]
  /** The latest verify outcome of each token checked. */
  verify: {byStatus: Record<string, number>; checked: number; failed: number; lastAt: null | string; ok: number}
  /** The page written (--html), or null. */
  html: null | {bytes: number; path: string}
}

/** Steps a time chart may use: at most MAX_BINS columns over the run. */
