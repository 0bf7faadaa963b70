import {closeSync, constants, fstatSync, openSync, readSync, type Stats, statSync} from 'node:fs'
import {open, stat} from 'node:fs/promises'

/**
 * The one way ckan-migrate reads a file the user named for input (ckan.ini, key and password
 * files, user lists, certificates, templates, env files): stat it before opening it, refuse
 * anything that is not a regular file (a FIFO would block the read forever, /dev/zero would
 * never end, a folder is not a file) and anything larger than the caller's limit, then open it
 * with O_NONBLOCK (a FIFO swapped in after the stat cannot block the open) and check it again
 * through the open handle. Reading never takes more than `maxBytes` of memory.
 *
 * Failures are InputFileErrors (or the system error of stat/open); `readFailure()` turns any of
 * them into the phrase a caller's one-line message ends with.
 */

export const KIB = 1024
export const MIB = 1024 * KIB

/** ckan.ini, key, token, password, certificate and template files: CKAN's own are kilobytes. */
export const SMALL_FILE_LIMIT = MIB
/** Lists that grow with the site (users, contacts, passwords of every user): 100k users fit. */
export const LIST_FILE_LIMIT = 64 * MIB

/** Read size once a file's own size is used up (or it says 0, as /proc files do). */
const CHUNK = 64 * 1024

export type InputFileOptions = {
  /** Refuse a file larger than this many bytes (before reading it). */
  maxBytes: number
}

export type InputFileProblem = 'device' | 'fifo' | 'folder' | 'not-regular' | 'socket' | 'too-big'

/** A file that must not be read: not a regular file, or too big. Carries `path` like a system error. */
export class InputFileError extends Error {
  readonly limit: number | undefined
  override name = 'InputFileError'
  readonly path: string
  readonly problem: InputFileProblem
  readonly size: number | undefined

  constructor(path: string, problem: InputFileProblem, details: {limit?: number; size?: number} = {}) {
    super(`${path} ${describeProblem(problem, details.size, details.limit)}`)
    this.path = path
    this.problem = problem
    this.size = details.size
    this.limit = details.limit
  }
}

/** Reads a whole input file (see the module comment). */
export async function readInputFile(path: string, options: InputFileOptions): Promise<Buffer> {
  checkInputStats(path, await stat(path), options.maxBytes)
  // O_NONBLOCK: a FIFO put there after the stat opens at once instead of waiting for a writer;
  // O_NOCTTY: a terminal device never becomes our controlling terminal.
  const handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY)
  try {
    const info = await handle.stat()
    checkInputStats(path, info, options.maxBytes)
    // Read at most one chunk past the limit: a file that grew since the stat (or a /proc file
    // whose size says 0) is read to its end or refused, never swallowed whole.
    const chunks: Buffer[] = []
    let length = 0
    for (;;) {
      const chunk = Buffer.alloc(nextChunk(info.size, length, options.maxBytes))
      const {bytesRead} = await handle.read(chunk, 0, chunk.length, length)
      if (bytesRead === 0) break
      chunks.push(chunk.subarray(0, bytesRead))
      length += bytesRead
      if (length > options.maxBytes) throw new InputFileError(path, 'too-big', {limit: options.maxBytes, size: length})
    }
    return Buffer.concat(chunks, length)
  } finally {
    await handle.close()
  }
}

/** What to read next: the rest of the file as stat saw it, then a chunk (until EOF), never past limit + 1. */
function nextChunk(size: number, length: number, maxBytes: number): number {
  const rest = size - length
  return Math.min(rest > 0 ? rest : CHUNK, CHUNK, maxBytes + 1 - length)
}

/** readInputFile() as UTF-8 text. */
export async function readInputText(path: string, options: InputFileOptions): Promise<string> {
  return (await readInputFile(path, options)).toString('utf8')
}

/**
 * Refuses a path that is not a regular file, without opening it (for files read by a stream,
 * such as a backup of any size).
 */
export async function assertRegularFile(path: string): Promise<Stats> {
  const info = await stat(path)
  checkInputStats(path, info, Number.POSITIVE_INFINITY)
  return info
}

function checkInputStats(path: string, info: Stats, maxBytes: number): void {
  if (!info.isFile()) {
    const problem: InputFileProblem = info.isDirectory()
      ? 'folder'
      : info.isFIFO()
        ? 'fifo'
        : info.isCharacterDevice() || info.isBlockDevice()
          ? 'device'
          : info.isSocket()
            ? 'socket'
            : 'not-regular'
    throw new InputFileError(path, problem)
  }
  if (info.size > maxBytes) throw new InputFileError(path, 'too-big', {limit: maxBytes, size: info.size})
}

function describeProblem(problem: InputFileProblem, size: number | undefined, limit: number | undefined): string {
  switch (problem) {
    case 'device': {
      return 'is a device, not a regular file'
    }
    case 'fifo': {
      return 'is a named pipe (FIFO), not a regular file'
    }
    case 'folder': {
      return 'is a folder, not a file'
    }
    case 'socket': {
      return 'is a socket, not a regular file'
    }
    case 'not-regular': {
      return 'is not a regular file'
    }
    case 'too-big': {
      return `is ${formatBytes(size ?? 0)}, more than the ${formatBytes(limit ?? 0)} such a file can sensibly be`
    }
  }
}

/** 1 MiB, 218.4 MiB, 512 bytes. */
export function formatBytes(bytes: number): string {
  if (bytes < KIB) return `${bytes} bytes`
  if (bytes < MIB) return `${trim(bytes / KIB)} KiB`
  if (bytes < 1024 * MIB) return `${trim(bytes / MIB)} MiB`
  return `${trim(bytes / (1024 * MIB))} GiB`
}

function trim(value: number): string {
  return value.toFixed(1).replace(/\.0$/, '')
}

/**
 * What went wrong reading an input file, as the end of a one-line message: "is a named pipe
 * (FIFO), not a regular file", "does not exist", "cannot be read (permission denied)". Works on
 * InputFileErrors and on system errors (ENOENT, EACCES, …) alike; never "(error)".
 */
export function readFailure(error: unknown): string {
  if (error instanceof InputFileError) return describeProblem(error.problem, error.size, error.limit)
  const code = (error as NodeJS.ErrnoException | undefined)?.code
  switch (code) {
    case 'ENOENT': {
      return 'does not exist'
    }
    case 'ENOTDIR': {
      return 'does not exist (a part of its path is a file, not a folder)'
    }
    case 'EISDIR': {
      return 'is a folder, not a file'
    }
    case 'EACCES': {
      return 'cannot be read (permission denied)'
    }
    case 'EPERM': {
      return 'cannot be read (operation not permitted)'
    }
    case 'ELOOP': {
      return 'cannot be read (a loop of symbolic links)'
    }
    case 'ENAMETOOLONG': {
      return 'cannot be read (the path is too long)'
    }
    case 'EIO': {
      return 'cannot be read (an input/output error: a failing disk or network file system)'
    }
    case undefined: {
      return `cannot be read (${error instanceof Error ? error.message.split('\n')[0] : String(error)})`
    }
    default: {
      return `cannot be read (${code})`
    }
  }
}

/**
 * readInputText() for the few places that must stay synchronous (building an HTTP agent): the
 * same checks, so a FIFO can never block the main thread (where not even a signal is handled).
 */
export function readInputTextSync(path: string, options: InputFileOptions): string {
  checkInputStats(path, statSync(path), options.maxBytes)
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY)
  try {
    const info = fstatSync(fd)
    checkInputStats(path, info, options.maxBytes)
    const chunks: Buffer[] = []
    let length = 0
    for (;;) {
      const chunk = Buffer.alloc(nextChunk(info.size, length, options.maxBytes))
      const bytesRead = readSync(fd, chunk, 0, chunk.length, length)
      if (bytesRead === 0) break
      chunks.push(chunk.subarray(0, bytesRead))
      length += bytesRead
      if (length > options.maxBytes) throw new InputFileError(path, 'too-big', {limit: options.maxBytes, size: length})
    }
    return Buffer.concat(chunks, length).toString('utf8')
  } finally {
    closeSync(fd)
  }
}
