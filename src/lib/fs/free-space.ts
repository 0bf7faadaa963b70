import {statfs} from 'node:fs/promises'
import {dirname, resolve} from 'node:path'

import {EXIT_CODES, MigrateError} from '../errors.js'
import {formatBytes} from './input-file.js'

/**
 * Bytes a non-root user may still write on the file system that holds `folder` (statfs), or the
 * folder it would be created in when it does not exist yet.
 */
export async function freeBytes(folder: string): Promise<number | undefined> {
  let at = resolve(folder)
  for (;;) {
    try {
      const info = await statfs(at)
      return info.bavail * info.bsize
    } catch (error) {
      const parent = dirname(at)
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT' || parent === at) {
        // A file system that cannot say (some FUSE or network mounts): the writes themselves will tell.
        return undefined
      }
      at = parent
    }
  }
}

/**
 * Refuses to start work that clearly cannot fit: `needed` is a low estimate of what the work
 * writes into `folder` (its run files), so a refusal means the disk would fill before the end.
 * A run that gets past this check and still fills the disk stops with nothing half-written
 * (JsonlFile's appends are all-or-nothing) and resumes once space is freed.
 */
export async function assertFreeSpace(folder: string, needed: number, what: string): Promise<void> {
  const free = await freeBytes(folder)
  if (free === undefined || free >= needed) return
  throw new MigrateError(
    `Not enough free space for ${what} in ${folder}: about ${formatBytes(needed)} are needed, ${formatBytes(free)} are free`,
    {
      exitCode: EXIT_CODES.writeFailed,
      suggestion:
        'Free some disk space there or choose an --out folder on another disk, then run the same command again.',
    },
  )
}
