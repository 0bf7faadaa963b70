import {open, readFile, rm} from 'node:fs/promises'
import {hostname} from 'node:os'

/**
 * A lock file: created exclusively (`wx`, 0600) with who holds it inside, removed when done. The
 * run folder's `lock` and rewrite-config's `<config>.ckan-migrate-lock` are both this. A lock whose
 * process is gone (kill -9, a crash) is stale and taken over; a lock written on another host
 * (a config file on a shared mount) cannot be checked from here, so it counts as held.
 */
export type LockHolder = {command: string; host?: string; pid: number; since?: string}

/** Whether a holder still runs: a live pid on this host, or any lock from another host. */
export function isHolderAlive(holder: LockHolder): boolean {
  if (holder.host !== undefined && holder.host !== hostname()) return true
  return isProcessAlive(holder.pid)
}

export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

export async function readLockFile(path: string): Promise<LockHolder | undefined> {
  try {
    const holder = JSON.parse(await readFile(path, 'utf8')) as LockHolder
    return typeof holder === 'object' && holder !== null ? holder : undefined
  } catch {
    return undefined
  }
}

/**
 * Takes the lock at `path`, or throws what `busy` makes of the live holder. Our own pid counts as
 * stale (a process in a restarted container may get the pid a killed one had). After two
 * attempts lost to a concurrent taker, throws `stuck()`.
 */
export async function takeLockFile(
  path: string,
  command: string,
  errors: {busy: (holder: LockHolder) => Error; stuck: () => Error},
): Promise<void> {
  for (let attempt = 0; attempt < 2; attempt += 1) {
    try {
      const handle = await open(path, 'wx', 0o600)
      try {
        const holder: LockHolder = {command, host: hostname(), pid: process.pid, since: new Date().toISOString()}
        await handle.writeFile(JSON.stringify(holder))
      } finally {
        await handle.close()
      }
      return
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
      const holder = await readLockFile(path)
      if (holder && typeof holder.pid === 'number' && holder.pid !== process.pid && isHolderAlive(holder))
        throw errors.busy(holder)
      await rm(path, {force: true})
    }
  }
  throw errors.stuck()
}
