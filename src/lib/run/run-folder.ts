import {randomBytes} from 'node:crypto'
import {readdir, readFile, rm, stat} from 'node:fs/promises'
import {join, resolve} from 'node:path'

import {EXIT_CODES, MigrateError} from '../errors.js'
import {folderError} from '../system-errors.js'
import {readFailure, readInputText, SMALL_FILE_LIMIT} from '../fs/input-file.js'
import {Secret} from '../secret.js'
import {JsonlFile} from './jsonl-file.js'
import {isHolderAlive, readLockFile, takeLockFile} from '../fs/lock-file.js'
import {ensurePrivateFolder, writeSecretFile} from '../fs/secret-file.js'

/**
 * The run folder (`--out DIR`), shared by issue-tokens, rewrite-config, verify, revoke, bundle
 * and purge-keys. Everything in it is private (0700 folder, 0600 files):
 *
 * - `run.json`     which site the run belongs to (refuses to mix sites), its id and start time.
 * - `tokens.jsonl` the token store: one line per token CKAN gave us, fsync'd before the user
 *                  counts as done. Holds secrets (the JWT and its jti).
 * - `journal.jsonl` what happened, event by event; no secret ever (jti fingerprints only).
 * - `revoked.jsonl` the jtis `revoke` revoked (full jti: fingerprints can collide), so every
 *                  command treats a revoked token of the run the same way.
 * - `token-header.json` the header CKAN accepted credentials in (token-header.ts), so later
 *                  commands on the run send the same one when nothing else says.
 * - `lock`         held while a command writes to the run (pid inside).
 * - reports (CSV) and `bundles/` are written next to them by the commands.
 */
export const RUN_FOLDER_FORMAT = 1

const TOKEN_HEADER_FILE = 'token-header.json'

export type RunSite = {
  /** Base URL of the CKAN site, normalised without a trailing slash. */
  ckanUrl: string
  /** Name of the site user (ckan.site_id) when known: a second identity check. */
  siteUserName?: string
}

export type RunMeta = {
  createdAt: string
  format: typeof RUN_FOLDER_FORMAT
  /** Short random id; token names of this run contain it, which is how reconciliation finds them. */
  runId: string
  site: RunSite
}

/** A token CKAN returned to us. The JWT and jti are secrets: this type only lives in tokens.jsonl. */
export type StoredToken = {
  createdAt: string
  expiresAt?: string | null
  /** The JWT's jti = api_token.id. */
  jti: string
  /** `rotate`: the jti of the token of the run this one succeeds (a secret, like jti). */
  predecessorJti?: string
  /** For tokens made for a service by rewrite-config (xloader, datapusher, …). */
  service?: string
  source: 'issue-tokens' | 'rewrite-config'
  /** The JWT itself. */
  token: string
  tokenName: string
  userId: string
  userName: string
}

/**
 * A tokens.jsonl entry as written: the strings every command relies on. A line edited by hand or
 * by another tool is refused with its run folder named, never shown (it holds a token).
 */
function checkStoredToken(record: StoredToken, folder: string): StoredToken {
  const fields: Record<string, unknown> = typeof record === 'object' && record !== null ? {...record} : {}
  const wrong = ['createdAt', 'jti', 'token', 'tokenName', 'userId', 'userName'].filter(
    (name) => typeof fields[name] !== 'string' || fields[name] === '',
  )
  if (wrong.length > 0) {
    throw new MigrateError(
      `${folder}/tokens.jsonl holds an entry that is not a token ckan-migrate wrote (bad ${wrong.join(', ')})`,
      {
        exitCode: EXIT_CODES.badInput,
        suggestion: 'Restore tokens.jsonl from a copy of the run folder; ckan-migrate only ever appends whole entries.',
      },
    )
  }
  return record
}

/** A token as the rest of the code sees it: secrets wrapped. */
export type RunToken = Omit<StoredToken, 'jti' | 'predecessorJti' | 'token'> & {
  jti: Secret
  /** `rotate`: the token of the run this one succeeds. */
  predecessorJti?: Secret
  /** Set by readTokens() when `revoke` revoked this token (from revoked.jsonl); never stored in tokens.jsonl. */
  revokedAt?: string
  token: Secret
}

function toRunToken(record: StoredToken, revokedAt: ReadonlyMap<string, string>): RunToken {
  const {jti, predecessorJti, token, ...rest} = record
  const at = revokedAt.get(jti)
  return {
    ...rest,
    jti: new Secret(jti),
    ...(typeof predecessorJti === 'string' ? {predecessorJti: new Secret(predecessorJti)} : {}),
    token: new Secret(token),
    ...(at === undefined ? {} : {revokedAt: at}),
  }
}

/** One line of revoked.jsonl (0600: the jti is a secret). */
type RevokedRecord = {at: string; jti: string; userId: string}

export type JournalEvent =
  | {attempt: number; kind: 'create-sent'; tokenName: string; userId: string; userName: string}
  /** Every earlier create for the user is accounted for: its token is in the store, or revoked as an orphan. */
  | {kind: 'create-settled'; userId: string; userName: string}
  | {jtiFingerprint: string; kind: 'token-issued'; tokenName: string; userId: string; userName: string}
  | {jtiFingerprint: string; kind: 'token-orphan-revoked'; tokenName: string; userId: string; userName: string}
  | {jtiFingerprint: string; kind: 'token-revoked'; userId: string; userName: string}
  /** `rotate`: a successor is stored; its predecessor stays live until `rotate --finish`. */
  | {
      jtiFingerprint: string
      kind: 'token-rotated'
      predecessorFingerprint: string
      service?: string
      tokenName: string
      userId: string
      userName: string
    }
  | {jtiFingerprint: string; kind: 'token-verified'; ok: boolean; status: string; userId: string; userName: string}
  /** --allow-other-url: the run's site was proven to answer at another URL (a staged upgrade's copy). */
  | {ckanUrl: string; command: string; evidence: string; kind: 'site-url-allowed'; recordedUrl: string}
  /** The header credentials are sent in was settled (first time, or changed). */
  | {command: string; header: string; kind: 'token-header'; source: string; why: string}
  | {kind: 'config-rewritten'; backupPath: string | null; configPath: string; keys: string[]}
  | {kind: 'keys-purged'; count: number; userIds: string[]}
  | {kind: 'run-finished'; command: string; summary: Record<string, number>}
  | {kind: 'run-started'; command: string; dryRun: boolean}
  | {kind: 'user-failed'; reason: string; userId: string; userName: string}
  | {kind: 'user-skipped'; reason: string; userId: string; userName: string}

export type JournalEntry = JournalEvent & {at: string}

export type OpenRunFolderOptions = {
  /** --allow-other-url: `site` may have another URL than run.json; RunFolder.otherUrl says so, the caller proves it. */
  allowOtherUrl?: boolean
  /** Create the folder and run.json when missing (false: it must exist, e.g. for verify/bundle). */
  create: boolean
  /** The site this command talks to; must match run.json when the folder already has one. */
  site?: RunSite
}

export class RunFolder {
  readonly journal: JsonlFile<JournalEntry>
  readonly meta: RunMeta
  /** Set when the command works on the run's site at another URL than run.json's (--allow-other-url): that URL. */
  readonly otherUrl: string | undefined
  readonly path: string
  readonly #revoked: JsonlFile<RevokedRecord>
  readonly #tokens: JsonlFile<StoredToken>
  #lockPath: string | undefined

  constructor(path: string, meta: RunMeta, otherUrl?: string) {
    this.path = path
    this.meta = meta
    this.otherUrl = otherUrl
    this.journal = new JsonlFile<JournalEntry>(join(path, 'journal.jsonl'))
    this.#revoked = new JsonlFile<RevokedRecord>(join(path, 'revoked.jsonl'))
    this.#tokens = new JsonlFile<StoredToken>(join(path, 'tokens.jsonl'))
  }

  /** Writes what is queued (deferred journal entries too) and closes the run's files. */
  async close(): Promise<void> {
    await Promise.all([this.journal.close(), this.#revoked.close(), this.#tokens.close()])
  }

  /** Path of a file inside the run folder. */
  file(name: string): string {
    return join(this.path, name)
  }

  /**
   * Takes the run's lock (a `lock` file with our pid). A lock whose process is gone is stale and
   * taken over; a live one means another ckan-migrate is writing to this run.
   */
  async lock(command: string): Promise<void> {
    const lockPath = this.file('lock')
    await takeLockFile(lockPath, command, {
      busy: (holder) =>
        new MigrateError(`The run folder ${this.path} is in use by ${holder.command} (pid ${holder.pid})`, {
          exitCode: EXIT_CODES.runConflict,
          suggestion: 'Wait for that command to finish, or stop it, then run this one again.',
        }),
      stuck: () =>
        new MigrateError(`Could not lock the run folder ${this.path}`, {
          exitCode: EXIT_CODES.runConflict,
          suggestion: 'Remove the stale lock file in the run folder if no ckan-migrate is running.',
        }),
    })
    this.#lockPath = lockPath
  }

  /** Who holds the run's lock, if anyone, and whether that process is still alive (a kill -9 leaves a stale lock). */
  async lockHolder(): Promise<null | {alive: boolean; command: string; pid: number; since: string | null}> {
    const holder = await readLockFile(this.file('lock'))
    if (!holder || typeof holder.pid !== 'number') return null
    return {alive: isHolderAlive(holder), command: String(holder.command), pid: holder.pid, since: holder.since ?? null}
  }

  /** Every stored token; those `revoke` revoked carry `revokedAt`. */
  async readTokens(): Promise<RunToken[]> {
    const [stored, revoked] = await Promise.all([this.#tokens.readAll(), this.#revoked.readAll()])
    const revokedAt = new Map(revoked.map((record) => [record.jti, record.at]))
    return stored.map((record) => toRunToken(checkStoredToken(record, this.path), revokedAt))
  }

  /**
   * Every stored token, one at a time (tokens.jsonl is never loaded whole); those `revoke`
   * revoked carry `revokedAt`, as in readTokens().
   */
  async *streamTokens(): AsyncGenerator<RunToken> {
    const revokedAt = new Map((await this.#revoked.readAll()).map((record) => [record.jti, record.at]))
    for await (const record of this.#tokens.stream()) yield toRunToken(checkStoredToken(record, this.path), revokedAt)
  }

  /**
   * Records (fsync'd) that a token of the run was revoked: by full jti in revoked.jsonl (0600), so
   * verify, bundle and a resumed issue-tokens skip it, and by fingerprint in the journal.
   */
  async recordRevoked(token: {jti: Secret; userId: string; userName: string}): Promise<void> {
    await this.#revoked.append({at: new Date().toISOString(), jti: token.jti.reveal(), userId: token.userId})
    await this.record({
      jtiFingerprint: token.jti.fingerprint(),
      kind: 'token-revoked',
      userId: token.userId,
      userName: token.userName,
    })
  }

  async record(event: JournalEvent): Promise<void> {
    await this.journal.append({...event, at: new Date().toISOString()} as JournalEntry)
  }

  /**
   * Journals an event that needs no fsync of its own (it goes to disk with the next record()):
   * only for advice whose loss in a crash costs a re-check, never for a write-ahead entry.
   */
  recordDeferred(event: JournalEvent): void {
    this.journal.appendDeferred({...event, at: new Date().toISOString()} as JournalEntry)
  }

  /** Stores a token durably (fsync'd) before anything else may count it as issued. */
  async storeToken(token: RunToken): Promise<void> {
    const {jti, predecessorJti, revokedAt: _revokedAt, token: jwt, ...rest} = token
    await this.#tokens.append({
      ...rest,
      jti: jti.reveal(),
      ...(predecessorJti ? {predecessorJti: predecessorJti.reveal()} : {}),
      token: jwt.reveal(),
    })
  }

  /** The header recorded by an earlier command on this run (token-header.json), if any. */
  async tokenHeader(): Promise<string | undefined> {
    try {
      const parsed = JSON.parse(await readFile(this.file(TOKEN_HEADER_FILE), 'utf8')) as {name?: unknown}
      return typeof parsed.name === 'string' && parsed.name !== '' ? parsed.name : undefined
    } catch {
      return undefined
    }
  }

  /** Records the header CKAN accepted credentials in, and journals it when it is new or changed. */
  async recordTokenHeader(header: {name: string; source: string; why: string}, command: string): Promise<void> {
    if ((await this.tokenHeader()) === header.name) return
    await writeSecretFile(this.file(TOKEN_HEADER_FILE), `${JSON.stringify({name: header.name, why: header.why})}\n`)
    await this.record({command, header: header.name, kind: 'token-header', source: header.source, why: header.why})
  }

  async unlock(): Promise<void> {
    if (this.#lockPath) await rm(this.#lockPath, {force: true})
    this.#lockPath = undefined
  }
}

/** Normalises a CKAN URL for comparison and storage: no trailing slash, no query. */
export function normaliseCkanUrl(url: string | URL): string {
  const parsed = new URL(String(url))
  parsed.hash = ''
  parsed.search = ''
  return parsed.href.replace(/\/+$/, '')
}

/**
 * Opens (or creates) a run folder and checks it belongs to `site`. The folder is made 0700 and
 * a folder that holds other things (not a run folder, not empty) is refused, so a typo in --out
 * never scatters secrets into, say, a home directory.
 */
export async function openRunFolder(dir: string, options: OpenRunFolderOptions): Promise<RunFolder> {
  const path = resolve(dir)
  const metaPath = join(path, 'run.json')
  let meta = await readMeta(metaPath)
  if (!meta) {
    if (!options.create) {
      throw new MigrateError(`${path} is not a ckan-migrate run folder (no run.json)`, {
        exitCode: EXIT_CODES.badInput,
        suggestion: 'Pass the --out folder that issue-tokens (or rewrite-config) wrote.',
      })
    }
    if (!options.site) throw new Error('openRunFolder: site is required to create a run folder')
    await assertEmptyOrMissing(path)
    try {
      await ensurePrivateFolder(path)
    } catch (error) {
      // Says "read-only file system" or "immutable" where the code alone (EROFS, EPERM) would not.
      throw folderError(path, error, 'the run folder', 'Choose an --out folder you may write to (it is created 0700).')
    }
    meta = {
      createdAt: new Date().toISOString(),
      format: RUN_FOLDER_FORMAT,
      runId: randomBytes(3).toString('hex'),
      site: {...options.site, ckanUrl: normaliseCkanUrl(options.site.ckanUrl)},
    }
    await writeSecretFile(metaPath, `${JSON.stringify(meta, null, 2)}\n`)
  }
  let otherUrl: string | undefined
  if (meta && options.site) otherUrl = assertSameSite(path, meta.site, options.site, options.allowOtherUrl ?? false)
  const info = await stat(path)
  if ((info.mode & 0o077) !== 0) await ensurePrivateFolder(path)
  return new RunFolder(path, meta, otherUrl)
}

/**
 * The given site must be the run's: the same URL, or (--allow-other-url) another URL of the same
 * site, which the caller then proves (site-identity.ts). Returns that other URL, if any.
 */
function assertSameSite(path: string, recorded: RunSite, given: RunSite, allowOtherUrl: boolean): string | undefined {
  const sameUrl = normaliseCkanUrl(recorded.ckanUrl) === normaliseCkanUrl(given.ckanUrl)
  const sameSiteUser = !recorded.siteUserName || !given.siteUserName || recorded.siteUserName === given.siteUserName
  const site = `${recorded.ckanUrl}${recorded.siteUserName ? `, site user ${recorded.siteUserName}` : ''}`
  if (!sameSiteUser) {
    throw new MigrateError(`The run folder ${path} belongs to another site (${site})`, {
      exitCode: EXIT_CODES.runConflict,
      suggestion: 'Use a new --out folder for this site, or point --ckan-url at the site this run was made for.',
    })
  }
  if (sameUrl) return undefined
  if (!allowOtherUrl) {
    throw new MigrateError(`The run folder ${path} belongs to another site (${site})`, {
      exitCode: EXIT_CODES.runConflict,
      suggestion: `Point --ckan-url at the site this run was made for. If ${normaliseCkanUrl(given.ckanUrl)} is the same site at another address (e.g. an upgraded copy for a staged upgrade), pass --allow-other-url: ckan-migrate then checks it is the same site by the run's own tokens and site user, and journals the new address.`,
    })
  }
  return normaliseCkanUrl(given.ckanUrl)
}

async function assertEmptyOrMissing(path: string): Promise<void> {
  let entries: string[]
  try {
    entries = await readdir(path)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code === 'ENOENT') return
    if (code === 'ENOTDIR') {
      // Either --out itself is a file, or a folder on its path is (then it cannot be created).
      const itself = await stat(path).then(
        (info) => info.isFile(),
        () => false,
      )
      throw new MigrateError(
        itself
          ? `--out ${path} is a file, not a folder`
          : `--out ${path} cannot be created: a part of its path is a file, not a folder`,
        {
          exitCode: EXIT_CODES.badInput,
          suggestion: 'Pass a new folder name for the run.',
        },
      )
    }
    throw new MigrateError(`Cannot read the run folder ${path}: ${code ?? 'error'}`, {
      cause: error,
      exitCode: EXIT_CODES.writeFailed,
      suggestion: 'Choose an --out folder you may read and write.',
    })
  }
  if (entries.length > 0) {
    throw new MigrateError(`--out ${path} already holds other files and is not a ckan-migrate run folder`, {
      exitCode: EXIT_CODES.runConflict,
      suggestion: 'Pass a new or empty folder for the run (it will hold secrets, so it is made private).',
    })
  }
}

async function readMeta(path: string): Promise<RunMeta | undefined> {
  let text: string
  try {
    // A run.json that is a FIFO or a device must not hang or flood the command (input-file.ts).
    text = await readInputText(path, {maxBytes: SMALL_FILE_LIMIT})
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined
    throw new MigrateError(`Cannot read ${path}: it ${readFailure(error)}`, {
      cause: error,
      exitCode: EXIT_CODES.badInput,
      suggestion: 'Run as the user who created the run folder.',
    })
  }
  try {
    const meta = JSON.parse(text) as RunMeta
    if (meta.format !== RUN_FOLDER_FORMAT || !meta.runId || !meta.site?.ckanUrl) throw new Error('unknown format')
    return meta
  } catch (error) {
    throw new MigrateError(`${path} is damaged or from an unknown version of ckan-migrate`, {
      cause: error,
      exitCode: EXIT_CODES.runConflict,
      suggestion: 'Use a new --out folder.',
    })
  }
}
