import {randomBytes} from 'node:crypto'
import {readdir, rename, rm, unlink} from 'node:fs/promises'
import {join} from 'node:path'

import {neutraliseCell} from '../fs/csv-report.js'
import {createDurableFile, syncFolder} from '../fs/durable-file.js'
import {BundleReadError, readAccessBundle} from './bundle-writer.js'
import {PASSWORDS_FILE, type PasswordRow, PasswordsSheet} from './passwords-csv.js'

/**
 * How `bundle` replaces bundles so that a kill -9 at any moment leaves every bundle in the folder
 * opening with the password passwords.csv gives for it.
 *
 * A bundle and its password live in two files, and no file system renames two files at once. So a
 * new bundle is first staged complete under a hidden name (`.<file>.<12 hex>.staged`, 0600,
 * fsync'd); then, for a batch of staged bundles at a time (group commit):
 *
 * 1. the old bundles they replace are removed and the folder fsync'd: from here until step 3 the
 *    user has no bundle in the folder, which is never a wrong one (a bundle whose file was not in
 *    the folder when the run began, under the run's lock, has nothing to remove);
 * 2. passwords.csv is replaced (atomically, durably) with the new passwords;
 * 3. the staged bundles are renamed to their names (all at once: each already has its password).
 *
 * Before step 2 passwords.csv holds the old password of every bundle still in the folder; after it,
 * the new password of every bundle renamed in step 3. A run killed between 2 and 3 leaves staged
 * bundles whose password passwords.csv already gives: the next run renames them into place
 * (recoverBundleDir). Every other temporary file of ours (a staged bundle whose password never
 * reached passwords.csv, writeDurably's `.partial` files) is removed by the next run.
 *
 * Commits run while the next bundles are being encrypted. Each rewrites the whole passwords.csv,
 * so a commit waits for a batch of at least 16 bundles or 1/16 of the rows passwords.csv holds,
 * whichever is more: 10,000 bundles cost about 16 rewrites of the full file, and a kill loses at
 * most one batch of staged (never committed, so never half-visible) bundles. The rows stay encoded
 * and sorted between commits (PasswordsSheet), so a rewrite costs the file's bytes, not its rows.
 */

/** Our temporary files in a bundle folder: staged bundles, and writeDurably's partial files. */
const MIN_BATCH = 16
const TEMPORARY_FILE = /^\.(.+)\.[0-9a-f]{12}\.(partial|staged)$/

/** The name a temporary file of ours stands for, if `name` is one (of a bundle or of passwords.csv). */
export function temporaryFileTarget(name: string, suffix: string): string | undefined {
  const target = TEMPORARY_FILE.exec(name)?.[1]
  if (target === undefined) return undefined
  return target === PASSWORDS_FILE || (suffix !== '' && target.endsWith(suffix)) ? target : undefined
}

/**
 * Cleans the temporary files a killed run left in the bundle folder: a staged bundle whose own file
 * is missing and which opens with the password passwords.csv lists for that file is renamed into
 * place (it was committed, then killed before its rename); every other one is removed.
 */
export async function recoverBundleDir(
  dir: string,
  suffix: string,
  listed: ReadonlyMap<string, PasswordRow>,
): Promise<{present: ReadonlySet<string>; removed: number; reused: number}> {
  const names = await readdir(dir)
  const present = new Set(names)
  const passwordOf = new Map([...listed.values()].map((row) => [row.file, row.password]))
  let removed = 0
  let reused = 0
  for (const name of names) {
    const target = temporaryFileTarget(name, suffix)
    if (target === undefined) continue
    const path = join(dir, name)
    const password = passwordOf.get(target)
    if (name.endsWith('.staged') && !present.has(target) && password !== undefined) {
      try {
        await readAccessBundle(path, password)
        await rename(path, join(dir, target))
        present.add(target)
        reused += 1
        continue
      } catch (error) {
        if (!(error instanceof BundleReadError)) throw error
      }
    }
    await rm(path, {force: true})
    removed += 1
  }
  if (removed + reused > 0) await syncFolder(dir)
  return {present, removed, reused}
}

type Staged = {row: PasswordRow; staged: string; target: string}

/** Bundles staged and committed with their passwords, as described above. One per bundle run. */
export class StagedBundles {
  /** Bundles whose new password is in passwords.csv and which are in place. */
  committed = 0
  readonly dir: string
  readonly passwordsFile: string
  #committing: Promise<void> | undefined
  /** Rows changed since passwords.csv was last written (a kept bundle's new email). */
  #dirty = false
  #failure: undefined | {error: unknown}
  #pending: Staged[] = []
  /** What passwords.csv holds, keyed by the user cell as written (formula-neutralised). */
  readonly #rows = new PasswordsSheet()

  /**
   * Names in the folder when the run began (recoverBundleDir), lower case (a file system may ignore
   * case): a bundle not among them has no old file to remove.
   */
  readonly #present: ReadonlySet<string>

  constructor(
    dir: string,
    passwordsFile: string,
    listed: ReadonlyMap<string, PasswordRow>,
    present: ReadonlySet<string>,
  ) {
    this.dir = dir
    this.passwordsFile = passwordsFile
    this.#present = new Set([...present].map((name) => name.toLowerCase()))
    for (const [key, row] of listed) this.#rows.set(key, row)
  }

  /** The row of a bundle kept as it is (its email may be new); written with the next commit. */
  keep(row: PasswordRow): void {
    this.#rows.set(neutraliseCell(row.user), row)
    this.#dirty = true
  }

  /**
   * Writes a new bundle under a hidden name and queues it for the next commit; resolves once it is
   * staged (not committed: finish() waits for that). Throws when an earlier commit failed.
   */
  async stage(row: PasswordRow, bytes: Uint8Array): Promise<void> {
    if (this.#failure) throw this.#failure.error
    const staged = join(this.dir, `.${row.file}.${randomBytes(6).toString('hex')}.staged`)
    await createDurableFile(staged, bytes, {mode: 0o600})
    this.#pending.push({row, staged, target: join(this.dir, row.file)})
    if (this.#pending.length >= this.#batchSize()) this.#committing ??= this.#commitLoop()
  }

  /**
   * Commits everything staged (also after a failure or Ctrl-C: those bundles are complete) and
   * writes passwords.csv if a row changed; staged bundles that cannot be committed are removed.
   * Throws the first commit failure.
   */
  async finish(): Promise<void> {
    while (this.#committing) await this.#committing
    if (!this.#failure && (this.#dirty || this.#pending.length > 0)) {
      const batch = this.#pending.splice(0)
      try {
        await this.#commit(batch)
      } catch (error) {
        this.#failure = {error}
        this.#pending.push(...batch.filter((entry) => entry.staged !== ''))
      }
    }
    await Promise.all(this.#pending.splice(0).map((entry) => rm(entry.staged, {force: true})))
    if (this.#failure) throw this.#failure.error
  }

  #batchSize(): number {
    return Math.max(MIN_BATCH, Math.ceil(this.#rows.size / 16))
  }

  async #commitLoop(): Promise<void> {
    while (this.#pending.length >= this.#batchSize() && !this.#failure) {
      const batch = this.#pending.splice(0)
      try {
        await this.#commit(batch)
      } catch (error) {
        this.#failure = {error}
        this.#pending.unshift(...batch.filter((entry) => entry.staged !== ''))
      }
    }
    this.#committing = undefined
  }

  async #commit(batch: Staged[]): Promise<void> {
    if (batch.length > 0) {
      // The run holds the run folder's lock: a bundle file missing when it began is still missing.
      const removed = await Promise.all(
        batch.map((entry) => this.#present.has(entry.row.file.toLowerCase()) && removeIfPresent(entry.target)),
      )
      // Nothing removed (a first run): no folder entry to make durable before passwords.csv changes.
      if (removed.includes(true)) await syncFolder(this.dir)
    }
    for (const entry of batch) this.#rows.set(neutraliseCell(entry.row.user), entry.row)
    this.#dirty = false
    await this.#rows.write(this.passwordsFile)
    // passwords.csv names every one of them now: their renames may run in any order, all at once.
    const renamed = await Promise.allSettled(
      batch.map(async (entry) => {
        await rename(entry.staged, entry.target)
        // Renamed: nothing left to remove should another rename fail.
        entry.staged = ''
        this.committed += 1
      }),
    )
    const failure = renamed.find((result) => result.status === 'rejected')
    if (failure) throw failure.reason
  }
}

/** Removes a file; false when there was none. */
async function removeIfPresent(path: string): Promise<boolean> {
  try {
    await unlink(path)
    return true
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false
    throw error
  }
}
