import {EXIT_CODES, MigrateError} from './errors.js'

/**
 * Turns a Node.js system error (EACCES, ENOSPC, …) that escaped a workflow into a one-line
 * MigrateError. Returns undefined for anything else, which the CLI then reports as a bug.
 */
export function translateSystemError(error: unknown): MigrateError | undefined {
  if (!(error instanceof Error)) return undefined
  const {code, path} = error as NodeJS.ErrnoException
  const where = path ? ` ${path}` : ''
  switch (code) {
    case 'EACCES':
    case 'EPERM': {
      return new MigrateError(`Permission denied:${where}`, {
        cause: error,
        exitCode: EXIT_CODES.writeFailed,
        suggestion: 'Run as a user who may write there, or choose another folder.',
      })
    }
    case 'EDQUOT':
    case 'ENOSPC': {
      return new MigrateError(`No space left on the device:${where}`, {
        cause: error,
        exitCode: EXIT_CODES.writeFailed,
        suggestion: 'Free some disk space or choose a folder on another disk, then run the same command again.',
      })
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
  return new MigrateError(`Cannot write into ${label} ${folder}: ${code ?? 'error'}`, {
    cause: error,
    exitCode: EXIT_CODES.writeFailed,
    suggestion,
  })
}
