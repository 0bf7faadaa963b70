import {access, constants, rm} from 'node:fs/promises'
import {createServer} from 'node:net'
import {join, resolve} from 'node:path'

import {parseDatabaseUrl} from '../lib/site/database-url.js'
import {EXIT_CODES, MigrateError} from '../lib/errors.js'
import {folderError} from '../lib/system-errors.js'
import {ensureFolderForSecrets, writeFileAtomically} from '../lib/fs/secret-file.js'
import type {CkanVersion} from '../lib/site/ckan-version.js'
import type {FaultSettings} from './faults.js'
import {type HostedSite, startSiteInWorker} from './hosted-site.js'
import type {SandboxSiteOptions} from './sandbox-site.js'

export const SANDBOX_FILE = 'sandbox.json'

export type SandboxOptions = {
  ckanVersion: CkanVersion
  /** A real PostgreSQL server to create the sandbox database on; PGlite when absent. */
  databaseUrl?: string
  dir: string
  faults?: FaultSettings
  /** Called at each step of the start-up (for a progress line). */
  onStep?: (step: string) => void
  port: number
  seed: string
  /** More settings for the site (e.g. a ckan.ini without api_token.* lines, as on sites upgraded from 2.8). */
  site?: Pick<SandboxSiteOptions, 'apiTokenLines'>
  users: number
}

/** What `sandbox` prints and `--json` returns; sandbox.json holds the same minus `engine`/`model`/`users`. */
export type SandboxResult = {
  apiKeyFile: string
  ckanIni: string
  ckanUrl: string
  ckanVersion: CkanVersion
  /** The sandbox database's URL, password replaced by *** (sandbox.json, 0600, has the full URL). */
  databaseUrl: string
  /** 'pglite' (embedded, in this process) or 'postgres' (a database on --database-url's server). */
  engine: 'pglite' | 'postgres'
  /** Which site the seed models: its CKAN history and who holds legacy keys, and why. */
  model: string
  /** Path of sandbox.json, written once the site answers. */
  sandboxFile: string
  users: number
}

export type RunningSandbox = {
  result: SandboxResult
  /** The site, running in a worker thread of its own (hosted-site.ts). */
  site: HostedSite
  /** Stops the emulator and the database, and removes sandbox.json. Safe to call twice. */
  stop(): Promise<void>
}

async function checkFolder(dir: string): Promise<void> {
  try {
    await ensureFolderForSecrets(dir)
    await access(dir, constants.W_OK)
  } catch (error) {
    throw folderError(
      dir,
      error,
      'the sandbox folder',
      'Pass a --dir you can write to (it is created 0700 if missing).',
    )
  }
}

async function checkPort(port: number): Promise<void> {
  if (port === 0) return
  await new Promise<void>((resolvePort, reject) => {
    const probe = createServer()
    probe.once('error', (error: NodeJS.ErrnoException) =>
      reject(
        new MigrateError(
          error.code === 'EADDRINUSE'
            ? `Port ${port} on 127.0.0.1 is already in use`
            : `Cannot listen on 127.0.0.1:${port}: ${error.code ?? 'error'}`,
          {
            cause: error,
            exitCode: EXIT_CODES.badInput,
            suggestion: 'Pick another --port, or --port 0 for any free port.',
          },
        ),
      ),
    )
    probe.listen(port, '127.0.0.1', () => probe.close(() => resolvePort()))
  })
}

/**
 * Starts a sandbox CKAN site: checks --dir and --port first (fast, one-line errors), then the
 * database (PGlite or a new database on a real server), schema, seeded users, ckan.ini, the
 * admin's credential file and the emulator, and writes sandbox.json once it answers. Returns
 * without waiting: the caller decides how long it runs (the `sandbox` command until Ctrl-C).
 */
export async function startSandbox(options: SandboxOptions): Promise<RunningSandbox> {
  const dir = resolve(options.dir)
  if (options.databaseUrl) parseDatabaseUrl(options.databaseUrl)
  await checkFolder(dir)
  await checkPort(options.port)
  options.onStep?.(options.databaseUrl ? 'Creating the sandbox database' : 'Starting PGlite')
  const site = await startSiteInWorker({
    ...options.site,
    dir,
    faults: options.faults,
    port: options.port,
    seed: options.seed,
    serverUrl: options.databaseUrl,
    users: options.users,
    version: options.ckanVersion,
  })
  const sandboxFile = join(dir, SANDBOX_FILE)
  const result: SandboxResult = {
    apiKeyFile: site.apiKeyFile,
    ckanIni: site.ckanIni,
    ckanUrl: site.ckanUrl,
    ckanVersion: site.version,
    databaseUrl: parseDatabaseUrl(site.databaseUrl).redacted,
    engine: site.engine,
    model: site.model,
    sandboxFile,
    users: options.users,
  }
  try {
    const response = await fetch(`${site.ckanUrl}/api/3/action/status_show`)
    if (!response.ok) throw new Error(`status_show answered ${response.status}`)
    const {apiKeyFile, ckanIni, ckanUrl, ckanVersion} = result
    const contents = {apiKeyFile, ckanIni, ckanUrl, ckanVersion, databaseUrl: site.databaseUrl}
    await writeFileAtomically(sandboxFile, `${JSON.stringify(contents, null, 2)}\n`, 0o600)
  } catch (error) {
    await site.stop()
    throw error
  }
  let stopped: Promise<void> | undefined
  return {
    result,
    site,
    stop() {
      stopped ??= (async () => {
        await rm(sandboxFile, {force: true})
        await site.stop()
      })()
      return stopped
    },
  }
}

/** Resolves when `signal` aborts (Ctrl-C / SIGTERM through the command's AbortSignal). */
export function waitUntilInterrupted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve()
  return new Promise((resolveWait) => signal.addEventListener('abort', () => resolveWait(), {once: true}))
}
