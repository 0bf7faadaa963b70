import {access, constants, readdir, stat} from 'node:fs/promises'
import {dirname, join, resolve} from 'node:path'
import pLimit from 'p-limit'

import type {Progress} from '../progress.js'
import {generatePassword, readPasswordFile} from '../bundle/passwords.js'
import {PASSWORDS_FILE, peopleTokens, readPasswordsCsv} from '../bundle/passwords-csv.js'
import {fetchServerCert, readServerCert, type ServerCert} from '../bundle/server-cert.js'
import {readSitePeople} from '../site/site-people.js'
import {describeUserNames, namedUsers} from '../site/user-selection.js'
import {EXIT_CODES, MigrateError} from '../errors.js'
import {accessBundleHolds, type AccessBundleEncryption, encodeAccessBundle} from '../bundle/bundle-writer.js'
import {recoverBundleDir, StagedBundles, temporaryFileTarget} from '../bundle/staged-bundles.js'
import {neutraliseCell} from '../fs/csv-report.js'
import {openRunFolder, type RunToken} from '../run/run-folder.js'
import {safeFileNames} from '../fs/safe-file-name.js'
import {ensureFolderForSecrets, syncFolder} from '../fs/secret-file.js'

export const DEFAULT_SUFFIX = '.dcor-access'
/**
 * Bundles in flight at once: enough to keep libuv's thread pool (PBKDF2, fsync) busy, also while
 * the main thread is busy elsewhere (the rehearsal's emulator and database share it): 64 bundles
 * queue about 40 ms of key derivation on two cores, 16 only 10 ms.
 */
const CONCURRENCY = 64

export const ZIPCRYPTO_WARNING =
  'ZipCrypto is weak: a token is a JWT, whose first bytes (eyJ0eXAiOiJKV1Qi…) every attacker knows, and that is enough known plaintext to recover the keys of a ZipCrypto archive without the password. Deliver these bundles only over channels you trust; see docs/security-model.md.'

export type BundleOptions = {
  /** --allow-cert-host-mismatch: bundle with a certificate whose CN is not the site's host (a warning, not exit 15). */
  allowCertHostMismatch?: boolean
  /** Default: `bundles/` inside the run folder. */
  bundleDir?: string
  /** Base URL of the site: the host the certificate's CN is checked against (default: the run's site). */
  ckanUrl?: URL
  /** For e-mail addresses in passwords.csv; without either, the email column stays empty. */
  database?: {ckanIni?: string; databaseUrl?: string}
  dryRun: boolean
  encryption: AccessBundleEncryption
  /** Rewrite every selected bundle with a new password, even one that is up to date. */
  force: boolean
  /** Bundles written or kept, once the number of people is known. */
  progress?: Progress
  /** The run folder (--out). */
  out: string
  /** --password-file: passwords the admin chose, instead of generated ones. */
  passwordFile?: string
  serverCert: {fetch: true; timeoutMs: number} | {file: string}
  signal?: AbortSignal
  suffix: string
  /** Only these users (names); default: every person with a token in the run. */
  users?: readonly string[]
}

export type BundleOutcome = {
  file: string
  /** kept: the bundle already held this token and certificate, under the password in passwords.csv. */
  outcome: 'kept' | 'would-keep' | 'would-write' | 'written'
  userName: string
}

export type BundleResult = {
  bundleDir: string
  bundles: BundleOutcome[]
  counts: {kept: number; total: number; written: number}
  dryRun: boolean
  /** Where the email column came from. */
  emails: 'database' | 'none'
  encryption: AccessBundleEncryption
  passwordsFile: string
  serverCert: {cn: string | null; count: number; fingerprint256: string; source: string; validTo: string}
  warnings: string[]
}

/**
 * Writes one encrypted `.dcor-access` bundle per person with a token in the run, and
 * `passwords.csv` (0600) with their passwords, for delivery through another channel. A rerun keeps
 * bundles that already hold the right token and certificate under the password listed in
 * passwords.csv, and rewrites the rest.
 */
export async function bundleAccess(options: BundleOptions): Promise<BundleResult> {
  const warnings: string[] = []
  const warn = (message: string) => warnings.push(message)
  validateSuffix(options.suffix)
  const run = await openRunFolder(options.out, {create: false})
  const tokens = await peopleTokens(run.journal.readAll(), await run.readTokens())
  if (tokens.size === 0) {
    throw new MigrateError(`The run folder ${run.path} holds no tokens for people to bundle`, {
      exitCode: EXIT_CODES.badInput,
      suggestion: 'Run issue-tokens with this --out first (service tokens of rewrite-config are never bundled).',
    })
  }
  const selected = selectUsers(tokens, options.users)
  const host = (options.ckanUrl ?? new URL(run.meta.site.ckanUrl)).hostname.replace(/^\[|\]$/g, '')
  const certificate: ServerCert =
    'file' in options.serverCert
      ? await readServerCert(options.serverCert.file, host, {allowHostMismatch: options.allowCertHostMismatch})
      : await fetchServerCert({
          allowHostMismatch: options.allowCertHostMismatch,
          ckanUrl: options.ckanUrl ?? new URL(run.meta.site.ckanUrl),
          signal: options.signal,
          timeoutMs: options.serverCert.timeoutMs,
          ...(options.ckanUrl ? {} : {urlFrom: "the run's site, from run.json"}),
        })
  for (const message of certificate.warnings) warn(message)

  const supplied = options.passwordFile ? await readPasswordFile(options.passwordFile) : undefined
  if (supplied?.warning) warn(supplied.warning)
  if (supplied) {
    const missing = selected.filter((token) => !supplied.passwords.has(token.userName)).map((token) => token.userName)
    if (missing.length > 0) {
      throw new MigrateError(
        `${options.passwordFile} has no password for ${missing.length} user(s): ${describeUserNames(missing)}`,
        {
          exitCode: EXIT_CODES.badInput,
          suggestion: 'Add a user,password line for each, or bundle only the users it lists with --users.',
        },
      )
    }
  }

  // Names come from every person in the run, not just --users, so a user's file never changes.
  const files = safeFileNames(tokens.keys())
  const fileOf = (userName: string) => `${files.get(userName)!}${options.suffix}`
  if ([...tokens.keys()].some((userName) => fileOf(userName).toLowerCase() === PASSWORDS_FILE)) {
    throw new MigrateError(`--suffix ${options.suffix} would name a bundle ${PASSWORDS_FILE}`, {
      exitCode: EXIT_CODES.badInput,
      suggestion: `Choose another --suffix, e.g. ${DEFAULT_SUFFIX}.`,
    })
  }

  const bundleDir = resolve(options.bundleDir ?? run.file('bundles'))
  const passwordsFile = join(bundleDir, PASSWORDS_FILE)
  await checkBundleDir(bundleDir, options.suffix)
  const emails = await readEmails(options.database, selected)
  const previous = await readPasswordsCsv(passwordsFile)

  options.progress?.start(selected.length)
  if (options.encryption === 'zipcrypto') warn(ZIPCRYPTO_WARNING)
  if (!options.dryRun) {
    await prepareBundleDir(bundleDir)
    await run.lock('bundle')
  }
  const outcomes: BundleOutcome[] = []
  let store: StagedBundles | undefined
  try {
    if (!options.dryRun) {
      // A killed run's staged bundles: renamed into place if passwords.csv has their password, else removed.
      const {present} = await recoverBundleDir(bundleDir, options.suffix, previous)
      store = new StagedBundles(bundleDir, passwordsFile, previous, present)
      await run.record({command: 'bundle', dryRun: false, kind: 'run-started'})
    }
    const limit = pLimit(CONCURRENCY)
    // After a failure the queued bundles are skipped, and the ones in flight finish before the
    // commit below: nothing is staged once the store is finished.
    let failed = false
    const settled = await Promise.allSettled(
      selected.map((token) =>
        limit(async () => {
          if (options.signal?.aborted || failed) return
          const file = fileOf(token.userName)
          const path = join(bundleDir, file)
          const listed = previous.get(neutraliseCell(token.userName))
          const wanted = supplied?.passwords.get(token.userName) ?? listed?.password
          const upToDate =
            !options.force &&
            listed !== undefined &&
            listed.file === neutraliseCell(file) &&
            wanted?.reveal() === listed.password.reveal() &&
            (await accessBundleHolds(path, listed.password, {
              encryption: options.encryption,
              serverCertPem: certificate.pem,
              token: token.token,
            }))
          const email = emails.get(token.userId) ?? listed?.email ?? ''
          let outcome: BundleOutcome['outcome']
          if (upToDate) {
            outcome = options.dryRun ? 'would-keep' : 'kept'
            store?.keep({email, file, password: listed.password, user: token.userName})
          } else if (options.dryRun || !store) {
            outcome = 'would-write'
          } else {
            const password = supplied?.passwords.get(token.userName) ?? generatePassword()
            const bytes = await encodeAccessBundle({
              encryption: options.encryption,
              password,
              serverCertPem: certificate.pem,
              token: token.token,
            })
            // Staged now; in place only once passwords.csv holds its password (StagedBundles).
            await store.stage({email, file, password, user: token.userName}, bytes)
            outcome = 'written'
          }
          outcomes.push({file, outcome, userName: token.userName})
          options.progress?.advance(1)
        }).catch((error: unknown) => {
          failed = true
          throw error
        }),
      ),
    )
    const failure = settled.find((result) => result.status === 'rejected')
    if (failure) throw failure.reason
  } finally {
    // Even after a failure or Ctrl-C, the bundles staged so far are committed with their passwords.
    if (store) {
      try {
        await store.finish()
        // The last renames, durable.
        await syncFolder(bundleDir)
      } finally {
        await run.unlock()
      }
    } else if (!options.dryRun) {
      await run.unlock()
    }
  }
  const written = store?.committed ?? 0
  if (options.signal?.aborted) {
    throw new MigrateError(`Interrupted after ${written} bundle(s); their passwords are in ${passwordsFile}`, {
      exitCode: EXIT_CODES.interrupted,
      suggestion: 'Run the same command again: finished bundles are kept.',
    })
  }
  const kept = outcomes.filter((outcome) => outcome.outcome === 'kept' || outcome.outcome === 'would-keep').length
  if (!options.dryRun) {
    await run.record({command: 'bundle', kind: 'run-finished', summary: {kept, written}})
  }
  outcomes.sort((a, b) => (a.userName < b.userName ? -1 : a.userName > b.userName ? 1 : 0))
  return {
    bundleDir,
    bundles: outcomes,
    counts: {kept, total: outcomes.length, written: outcomes.length - kept},
    dryRun: options.dryRun,
    emails: options.database?.ckanIni || options.database?.databaseUrl ? 'database' : 'none',
    encryption: options.encryption,
    passwordsFile,
    serverCert: {
      cn: certificate.subject.cn ?? null,
      count: certificate.count,
      fingerprint256: certificate.subject.fingerprint256,
      source: certificate.source,
      validTo: certificate.subject.validTo,
    },
    warnings,
  }
}

function selectUsers(tokens: Map<string, RunToken>, users: readonly string[] | undefined): RunToken[] {
  if (!users || users.length === 0) return [...tokens.values()]
  const wanted = namedUsers(users)
  const unknown = wanted.filter((user) => !tokens.has(user))
  if (unknown.length > 0) {
    throw new MigrateError(
      `${unknown.length} user(s) given with --users have no token in this run: ${describeUserNames(unknown)}`,
      {
        exitCode: EXIT_CODES.badInput,
        suggestion: 'Check the names (CKAN user names, not display names), or issue tokens for them first.',
      },
    )
  }
  return wanted.map((user) => tokens.get(user)!)
}

function validateSuffix(suffix: string): void {
  if (!/^[\w.-]{0,32}$/.test(suffix) || suffix === '.' || suffix === '..') {
    throw new MigrateError(`--suffix ${JSON.stringify(suffix)} is not a portable file name ending`, {
      exitCode: EXIT_CODES.badInput,
      suggestion: `Use letters, digits, '.', '_' and '-' only (at most 32), e.g. ${DEFAULT_SUFFIX}.`,
    })
  }
}

function notWritable(path: string, error: unknown): MigrateError {
  if (error instanceof MigrateError) return error
  return new MigrateError(
    `Cannot write to the bundle folder ${path}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`,
    {
      cause: error,
      exitCode: EXIT_CODES.writeFailed,
      suggestion: 'Choose a --bundle-dir you may write to (it is made 0700), or fix its permissions.',
    },
  )
}

/**
 * Checks, without writing, that the bundle folder can be used: it is a folder (or can be created),
 * may be written, and is not a shared folder full of other files (it is made private).
 */
async function checkBundleDir(path: string, suffix: string): Promise<void> {
  let info
  try {
    info = await stat(path)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw notWritable(path, error)
    let parent = dirname(path)
    while (parent !== dirname(parent)) {
      try {
        const parentInfo = await stat(parent)
        if (!parentInfo.isDirectory()) {
          throw new MigrateError(`--bundle-dir ${path} is inside ${parent}, which is a file`, {
            exitCode: EXIT_CODES.badInput,
            suggestion: 'Pass a folder path for --bundle-dir.',
          })
        }
        break
      } catch (parentError) {
        if (parentError instanceof MigrateError) throw parentError
        if ((parentError as NodeJS.ErrnoException).code !== 'ENOENT') throw notWritable(path, parentError)
        parent = dirname(parent)
      }
    }
    try {
      await access(parent, constants.W_OK | constants.X_OK)
    } catch (accessError) {
      throw notWritable(path, accessError)
    }
    return
  }
  if (!info.isDirectory()) {
    throw new MigrateError(`--bundle-dir ${path} is a file, not a folder`, {
      exitCode: EXIT_CODES.badInput,
      suggestion: 'Pass a folder for --bundle-dir (it is created when missing).',
    })
  }
  try {
    await access(path, constants.W_OK | constants.X_OK)
  } catch (error) {
    throw notWritable(path, error)
  }
  if ((info.mode & 0o077) !== 0) {
    const others = (await readdir(path)).filter(
      (name) =>
        name !== PASSWORDS_FILE &&
        !(suffix !== '' && name.endsWith(suffix)) &&
        temporaryFileTarget(name, suffix) === undefined,
    )
    if (others.length > 0) {
      throw new MigrateError(
        `--bundle-dir ${path} is shared (mode ${(info.mode & 0o777).toString(8)}) and holds other files`,
        {
          exitCode: EXIT_CODES.badInput,
          suggestion: 'Pass a new folder: it is made 0700, because it will hold passwords.csv.',
        },
      )
    }
  }
}

async function prepareBundleDir(path: string): Promise<void> {
  try {
    await ensureFolderForSecrets(path)
  } catch (error) {
    throw notWritable(path, error)
  }
}

async function readEmails(database: BundleOptions['database'], tokens: RunToken[]): Promise<Map<string, string>> {
  if (!database?.databaseUrl && !database?.ckanIni) return new Map()
  const people = await readSitePeople(
    database,
    tokens.map((token) => token.userId),
  )
  return new Map([...people].filter(([, person]) => person.email).map(([id, person]) => [id, person.email!]))
}
