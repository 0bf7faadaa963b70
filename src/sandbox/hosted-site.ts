import {setTimeout as sleep} from 'node:timers/promises'
import {Worker} from 'node:worker_threads'

import type {BackupResult} from '../lib/backup/backup-writer.js'
import {EXIT_CODES, type ExitCode, MigrateError} from '../lib/errors.js'
import type {CkanVersion} from '../lib/site/ckan-version.js'
import {Secret} from '../lib/secret.js'
import type {EmulatorStats} from './ckan-emulator.js'
import type {EmbeddedBackupOptions} from './embedded-backup.js'
import type {FaultSettings} from './faults.js'
import type {SandboxSite, SandboxSiteOptions} from './sandbox-site.js'

/** The emulator of a site in a worker thread: what the sandbox command and the rehearsal ask of it. */
export type HostedEmulator = {
  /** Re-reads the ckan.ini, as a CKAN restart would. */
  loadConfig(ckanIni?: string): Promise<void>
  readonly port: number
  setFaults(settings: FaultSettings): Promise<void>
  /** Switches to another CKAN version over the same database and ini (reloads the ini). */
  setVersion(version: CkanVersion): Promise<void>
  stats(): Promise<EmulatorStats>
  readonly url: string
  readonly version: CkanVersion
}

/**
 * A sandbox site (sandbox-site.ts) running in a worker thread: the same facts, its emulator
 * reached by messages, and the embedded database backed up where it lives.
 */
export type HostedSite = Omit<SandboxSite, 'emulator' | 'pglite'> & {
  /** PGlite only: pglite-tools' dump of the embedded database, encrypted (embedded-backup.ts). */
  backupEmbedded?: (options: Omit<EmbeddedBackupOptions, 'db' | 'onProgress' | 'signal'>) => Promise<BackupResult>
  emulator: HostedEmulator
}

/** What the worker answers to `start` (plain data: it crosses the thread boundary). */
export type WorkerSiteFacts = Omit<SandboxSite, 'adminCredential' | 'emulator' | 'pglite' | 'stop'> & {
  adminCredential: string
  port: number
}

export type SiteRequest = {id: number} & (
  | {op: 'backup'; options: unknown}
  | {op: 'loadConfig'; path?: string}
  | {op: 'setFaults'; faults: unknown}
  | {op: 'setVersion'; version: string}
  | {op: 'start'; options: unknown}
  | {op: 'stats'}
  | {op: 'stop'}
)

export type SiteWorkerReply = {
  error?: {code?: string; exitCode?: number; message: string; name: string; suggestion?: string}
  id: number
  value?: unknown
}

type RequestBody = SiteRequest extends infer R ? (R extends SiteRequest ? Omit<R, 'id'> : never) : never

/**
 * Starts a sandbox site (startSandboxSite's options) in a worker thread, so that PGlite, its
 * socket server and the emulator have an event loop and a core of their own while the CLI's
 * workflows use this thread: on one thread every request's database work, HTTP handling and the
 * client's own work run one after another (docs/emulator.md, "Performance"). Everything the
 * site is reached by (HTTP, the database URL, the files in `dir`) is the same as in-process.
 */
export async function startSiteInWorker(options: SandboxSiteOptions): Promise<HostedSite> {
  const source = new URL(import.meta.url).pathname.endsWith('.ts')
  // From the sources (tests, bin/dev.js) the worker runs the TypeScript through tsx, as they do.
  const worker = new Worker(new URL(`./site-worker.${source ? 'ts' : 'js'}`, import.meta.url), {
    // Node's options of this process (e.g. --cpu-prof) apply to the site's thread too.
    execArgv: source ? [...process.execArgv, '--import', 'tsx'] : undefined,
  })
  let nextId = 1
  const waiting = new Map<number, {reject(error: Error): void; resolve(value: unknown): void}>()
  let exited: Error | undefined
  const failAll = (error: Error) => {
    exited ??= error
    for (const entry of waiting.values()) entry.reject(error)
    waiting.clear()
  }
  worker.on('message', (reply: SiteWorkerReply) => {
    const entry = waiting.get(reply.id)
    if (!entry) return
    waiting.delete(reply.id)
    if (reply.error) entry.reject(revived(reply.error))
    else entry.resolve(reply.value)
  })
  worker.on('error', (error) => failAll(error))
  worker.on('exit', (code) =>
    failAll(
      new MigrateError(`The sandbox's embedded CKAN site stopped: its thread exited (code ${code})`, {
        exitCode: EXIT_CODES.unexpected,
        suggestion:
          'Run the sandbox again; if it stops again, try fewer --users or a PostgreSQL server (--database-url), and report it with the command line.',
      }),
    ),
  )
  const call = <T>(request: RequestBody): Promise<T> => {
    if (exited) return Promise.reject(exited)
    const id = nextId++
    return new Promise<T>((resolve, reject) => {
      waiting.set(id, {reject, resolve: resolve as (value: unknown) => void})
      worker.postMessage({...request, id})
    })
  }
  let facts: WorkerSiteFacts
  try {
    facts = await call<WorkerSiteFacts>({op: 'start', options: {...options, env: options.env ?? process.env}})
  } catch (error) {
    await worker.terminate()
    throw error
  }
  let version = facts.version
  let stopped: Promise<void> | undefined
  const {adminCredential, port, ...rest} = facts
  return {
    ...rest,
    adminCredential: new Secret(adminCredential),
    ...(facts.engine === 'pglite'
      ? {backupEmbedded: (backup) => call<BackupResult>({op: 'backup', options: backup})}
      : {}),
    emulator: {
      loadConfig: (path) => call({op: 'loadConfig', path}),
      port,
      setFaults: (faults) => call({faults, op: 'setFaults'}),
      async setVersion(next) {
        await call({op: 'setVersion', version: next})
        version = next
      },
      stats: () => call<EmulatorStats>({op: 'stats'}),
      url: facts.ckanUrl,
      get version() {
        return version
      },
    },
    stop() {
      stopped ??= (async () => {
        try {
          if (!exited) {
            const ended = new Promise((resolve) => worker.once('exit', resolve))
            await call({op: 'stop'})
            // The thread ends by itself once stopped; a thread still busy after 5 s is ended.
            await Promise.race([ended, sleep(5000, undefined, {ref: false})])
          }
        } finally {
          await worker.terminate()
        }
      })()
      return stopped
    },
  }
}

/** The worker's error as this thread throws it: a MigrateError stays one (exit code, suggestion). */
function revived(error: NonNullable<SiteWorkerReply['error']>): Error {
  if (error.exitCode !== undefined)
    return new MigrateError(error.message, {exitCode: error.exitCode as ExitCode, suggestion: error.suggestion})
  return Object.assign(new Error(error.message), {code: error.code, name: error.name})
}
