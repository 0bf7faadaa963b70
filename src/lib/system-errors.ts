import {EXIT_CODES, MigrateError} from './errors.js'
import {formatBytes, InputFileError} from './fs/input-file.js'

function isRoot(): boolean {
  return process.getuid?.() === 0
}

/**
 * Root is refused only by what root cannot override: an immutable or append-only file (chattr
 * +i / +a: EPERM), a network file system that maps root to nobody (EACCES), a security module.
 * "Run as root" would be no help there.
 */
function deniedToRoot(error: Error, code: 'EACCES' | 'EPERM', path: string | undefined): MigrateError {
  const target = path ?? 'the file'
  if (code === 'EPERM') {
    return new MigrateError(`Operation not permitted even as root: ${target} (it may be immutable or append-only)`, {
      cause: error,
      exitCode: EXIT_CODES.writeFailed,
      suggestion: `Check its attributes with lsattr ${target}; chattr -i ${target} (or -a) clears them if the change is intended, or choose another folder.`,
    })
  }
  return new MigrateError(`Permission denied even as root: ${target}`, {
    cause: error,
    exitCode: EXIT_CODES.writeFailed,
    suggestion:
      'A network file system may map root to nobody (root_squash), or a security module (SELinux, AppArmor) refuses it: choose a local folder.',
  })
}

/**
 * Turns a Node.js system error (EACCES, ENOSPC, …) that escaped a workflow into a one-line
 * MigrateError. Returns undefined for anything else, which the CLI then reports as a bug.
 */
export function translateSystemError(error: unknown): MigrateError | undefined {
  if (error instanceof InputFileError) {
    // A FIFO, a device, a folder or an oversized file where a file is read (src/lib/fs/input-file.ts).
    return new MigrateError(error.message, {
      cause: error,
      exitCode: EXIT_CODES.badInput,
      suggestion: 'Pass the path of a regular file (not a pipe, a device or a folder).',
    })
  }
  if (!(error instanceof Error)) return undefined
  const {code, path} = error as NodeJS.ErrnoException
  const where = path ? ` ${path}` : ''
  switch (code) {
    case 'EACCES':
    case 'EPERM': {
      if (isRoot()) return deniedToRoot(error, code, path)
      return new MigrateError(`Permission denied:${where}`, {
        cause: error,
        exitCode: EXIT_CODES.writeFailed,
        suggestion: 'Run as a user who may write there, or choose another folder.',
      })
    }
    case 'EDQUOT':
    case 'ENOSPC': {
      // Set by the writers of src/lib/fs and JsonlFile: what the failed write needed.
      const {bytesAtLeast, bytesNeeded} = error as {bytesAtLeast?: unknown; bytesNeeded?: unknown}
      const how =
        typeof bytesNeeded === 'number'
          ? ` (${formatBytes(bytesNeeded)} more were needed)`
          : typeof bytesAtLeast === 'number'
            ? ` (more than the ${formatBytes(bytesAtLeast)} written were needed)`
            : ''
      return new MigrateError(
        `${code === 'EDQUOT' ? 'Disk quota exceeded' : 'No space left on the device'}:${where}${how}`,
        {
          cause: error,
          exitCode: EXIT_CODES.writeFailed,
          suggestion:
            'Free some disk space or choose a folder on another disk, then run the same command again (nothing half-written is kept).',
        },
      )
    }
    case 'EEXIST': {
      // mkdir -p over a path where a regular file sits (e.g. --csv some-file/report.csv).
      return new MigrateError(`A file is in the way where a folder is needed:${where}`, {
        cause: error,
        exitCode: EXIT_CODES.badInput,
        suggestion: 'Check the path you passed: a part of it is a file, not a folder.',
      })
    }
    case 'EISDIR':
    case 'ENOENT':
    case 'ENOTDIR': {
      return new MigrateError(`No such file or folder:${where}`, {
        cause: error,
        exitCode: EXIT_CODES.badInput,
        suggestion: 'Check the path you passed.',
      })
    }
    case 'EROFS': {
      return new MigrateError(`Read-only file system:${where}`, {
        cause: error,
        exitCode: EXIT_CODES.writeFailed,
        suggestion: 'Choose a folder on a writable file system.',
      })
    }
    default: {
      return undefined
    }
  }
}

/**
 * The one error for a folder we could not create or write (`--out`, `--dir`, `--bundle-dir`):
 * a file in the way is the user's input (exit 7); permissions, a full disk or a read-only file
 * system are a write failure (exit 13). A MigrateError passes through unchanged.
 */
export function folderError(folder: string, error: unknown, label: string, suggestion: string): MigrateError {
  if (error instanceof MigrateError) return error
  const code = (error as NodeJS.ErrnoException).code
  if (code === 'ENOTDIR' || code === 'EEXIST') {
    return new MigrateError(`${label} ${folder} cannot be created: a part of its path is a file, not a folder`, {
      cause: error,
      exitCode: EXIT_CODES.badInput,
      suggestion,
    })
  }
  if (code === 'EROFS') {
    return new MigrateError(`Cannot write into ${label} ${folder}: it is on a read-only file system`, {
      cause: error,
      exitCode: EXIT_CODES.writeFailed,
      suggestion,
    })
  }
  if (code === 'EPERM' && isRoot()) {
    // Root is refused by an immutable folder (chattr +i) or a file system that takes no files (/sys, /proc).
    return new MigrateError(
      `Cannot write into ${label} ${folder}: not permitted even as root (an immutable folder, or a file system such as /sys that takes no files)`,
      {
        cause: error,
        exitCode: EXIT_CODES.writeFailed,
        suggestion: `${suggestion} (lsattr -d shows an immutable flag; chattr -i clears it.)`,
      },
    )
  }
  if (code === 'EACCES' && isRoot()) return deniedToRoot(error as Error, code, folder)
  if (code === 'ENOSPC' || code === 'EDQUOT') return translateSystemError(error)!
  return new MigrateError(`Cannot write into ${label} ${folder}: ${code ?? 'error'}`, {
    cause: error,
    exitCode: EXIT_CODES.writeFailed,
    suggestion,
  })
}
