import {execFile} from 'node:child_process'
import {constants} from 'node:fs'
import {mkdtemp, open, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {promisify} from 'node:util'
import {describe, expect, it, onTestFinished} from 'vitest'

import {sha256OfFile} from '../../../src/lib/backup/backup-sidecar.js'
import {EXIT_CODES} from '../../../src/lib/errors.js'
import {InputFileError, readFailure, readInputText, readInputTextSync} from '../../../src/lib/fs/input-file.js'
import {translateSystemError} from '../../../src/lib/system-errors.js'

const execFileAsync = promisify(execFile)

async function folder(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'ckan-migrate-input-'))
  onTestFinished(() => rm(dir, {force: true, recursive: true}))
  return dir
}

/** A FIFO nobody writes to; opened for writing after the test so a reader stuck on it (a regression) goes on. */
async function fifo(dir: string): Promise<string> {
  const path = join(dir, 'pipe')
  await execFileAsync('mkfifo', [path])
  onTestFinished(async () => {
    await (await open(path, constants.O_WRONLY | constants.O_NONBLOCK).catch(() => undefined))?.close()
  })
  return path
}

describe('readInputText', () => {
  it('reads a regular file; refuses a FIFO, a device, a folder and a file over the limit, saying which', async () => {
    const dir = await folder()
    await writeFile(join(dir, 'ok.txt'), 'hello\n')
    expect(await readInputText(join(dir, 'ok.txt'), {maxBytes: 10})).toBe('hello\n')
    expect(readInputTextSync(join(dir, 'ok.txt'), {maxBytes: 10})).toBe('hello\n')
    const pipe = await fifo(dir)
    const cases: Array<[string, RegExp]> = [
      [pipe, /^is a named pipe \(FIFO\), not a regular file$/],
      ['/dev/zero', /^is a device, not a regular file$/],
      [dir, /^is a folder, not a file$/],
      [join(dir, 'ok.txt'), /^is 6 bytes, more than the 5 bytes such a file can sensibly be$/],
      [join(dir, 'missing'), /^does not exist$/],
    ]
    for (const [path, reason] of cases) {
      const error = await readInputText(path, {maxBytes: 5}).catch((error_: unknown) => error_)
      expect(readFailure(error), path).toMatch(reason)
      let syncError: unknown
      try {
        readInputTextSync(path, {maxBytes: 5})
      } catch (error_) {
        syncError = error_
      }
      expect(readFailure(syncError), path).toMatch(reason)
    }
  })

  it('a backup that is a FIFO is refused before it is hashed (one-line bad input, not a hang)', async () => {
    const pipe = await fifo(await folder())
    const error = await sha256OfFile(pipe).catch((error_: unknown) => error_)
    expect(error).toBeInstanceOf(InputFileError)
    const translated = translateSystemError(error)
    expect(translated?.exitCode).toBe(EXIT_CODES.badInput)
    expect(translated?.message).toMatch(/pipe is a named pipe \(FIFO\), not a regular file$/)
  })
})
