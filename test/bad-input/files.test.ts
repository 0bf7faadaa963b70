import {execFile} from 'node:child_process'
import {constants} from 'node:fs'
import {copyFile, open, truncate, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {promisify} from 'node:util'
import {afterAll, beforeAll, describe, expect, it, onTestFinished} from 'vitest'

import {EXIT_CODES} from '../../src/lib/errors.js'
import {runCliChild} from '../helpers/run-cli-child.js'
import {issueTokensArgs} from '../helpers/site-commands.js'
import {startTestSite} from '../helpers/test-site.js'
import {expectNoLeak, expectRefused, removeFolder, temporaryFolder} from './support.js'

const execFileAsync = promisify(execFile)

/**
 * A named pipe nobody writes to. Reading it blocks forever (in libuv's thread pool, where not
 * even process.exit gets past it), so after the test it is opened for writing once: a reader
 * still blocked on it (the code before the fix) then reads an end of file and goes on.
 */
async function fifo(dir: string, name: string): Promise<string> {
  const path = join(dir, name)
  await execFileAsync('mkfifo', [path])
  onTestFinished(async () => {
    const writer = await open(path, constants.O_WRONLY | constants.O_NONBLOCK).catch(() => undefined)
    await writer?.close()
  })
  return path
}

describe('bad input: files that are not regular files, or too big', () => {
  let dir: string
  /** issue-tokens reads its key file before anything else (no CKAN answers on port 9). */
  const issueTokens = (keyFile: string) => [
    'issue-tokens',
    '--ckan-url',
    'http://127.0.0.1:9',
    '--api-key-file',
    keyFile,
    '--out',
    join(dir, 'never-made'),
  ]
  beforeAll(async () => {
    dir = await temporaryFolder('ckan-migrate-files-', {autoRemove: false})
  })
  afterAll(() => removeFolder(dir))

  it('a FIFO as --ckan-ini is refused at once, without waiting for a writer', async () => {
    const path = await fifo(dir, 'ckan.ini')
    const run = await runCliChild(['audit', '--ckan-ini', path])
    expect(run.code, run.output).toBe(EXIT_CODES.badInput)
    expect(run.output).toMatch(/The ckan\.ini .*ckan\.ini is a named pipe \(FIFO\), not a regular file/)
    expectNoLeak(run.output)
  }, 120_000)

  it('a FIFO as --api-key-file: refused, nothing hangs', async () => {
    const key = await fifo(dir, 'admin.key')
    const keyRun = await runCliChild(issueTokens(key))
    expect(keyRun.code, keyRun.output).toBe(EXIT_CODES.badInput)
    expect(keyRun.output).toMatch(
      /Cannot read the API key file .*admin\.key: it is a named pipe \(FIFO\), not a regular file/,
    )
  }, 120_000)

  it('an empty API key file, and one holding "Bearer <token>": said so, not "exactly one token"', async () => {
    const empty = join(dir, 'empty.key')
    await writeFile(empty, '\n', {mode: 0o600})
    await expectRefused(issueTokens(empty), {
      code: 'badInput',
      message: /empty\.key is empty: it must hold the API token or key$/,
    })
    const bearer = join(dir, 'bearer.key')
    const token = 'eyJhbGciOiJIUzI1NiJ9.eyJqdGkiOiJ4In0.c2lnbmF0dXJl'
    await writeFile(bearer, `Bearer ${token}\n`, {mode: 0o600})
    await expectRefused(issueTokens(bearer), {
      code: 'badInput',
      message: /bearer\.key starts with "Bearer": it must hold just the API token or key, without a prefix$/,
      secrets: [token],
      suggestion: /Remove the "Bearer " prefix/,
    })
  })

  it('/dev/zero as --api-key-file: a device, not "(error)"', async () => {
    await expectRefused(issueTokens('/dev/zero'), {
      code: 'badInput',
      message: /^Cannot read the API key file \/dev\/zero: it is a device, not a regular file$/,
    })
  })

  it('/dev/zero as --ckan-ini: a device, not a regular file (never read)', async () => {
    await expectRefused(['audit', '--ckan-ini', '/dev/zero'], {
      code: 'badInput',
      message: /^The ckan\.ini \/dev\/zero is a device, not a regular file$/,
    })
  })

  it('a folder as --ckan-ini', async () => {
    await expectRefused(['audit', '--ckan-ini', dir], {
      code: 'badInput',
      message: /is a folder, not a file$/,
    })
  })

  it('a ckan.ini over 1 MiB is refused before it is read', async () => {
    const path = join(dir, 'huge.ini')
    await writeFile(path, '[app:main]\nckan.site_id = default\n')
    await truncate(path, 3 * 1024 * 1024)
    await expectRefused(['audit', '--ckan-ini', path], {
      code: 'badInput',
      message: /^The ckan\.ini .*huge\.ini is 3 MiB, more than the 1 MiB such a file can sensibly be$/,
    })
  })

  it('a ckan.ini that sets a key twice (last one would win): refused with both lines, by audit too', async () => {
    const path = join(dir, 'twice.ini')
    await writeFile(
      path,
      '[app:main]\nuse = egg:ckan\nsqlalchemy.url = postgresql://ckan@db/ckan\nckan.site_id = default\nSQLAlchemy.Url = postgresql://ckan@db/other\n',
    )
    await expectRefused(['audit', '--ckan-ini', path], {
      code: 'badInput',
      message: /twice\.ini sets SQLAlchemy\.Url more than once in \[app:main\] \(lines 3, 5\)$/,
      suggestion: /ConfigParser refuses such a file/,
    })
  })

  it('a ckan.ini with [app:main] twice', async () => {
    const path = join(dir, 'two-sections.ini')
    await writeFile(path, '[app:main]\nckan.site_id = a\n\n[app:main]\nckan.site_id = b\n')
    await expectRefused(['audit', '--ckan-ini', path], {
      code: 'badInput',
      message: /two-sections\.ini has the section \[app:main\] more than once \(lines 1, 4\)$/,
    })
  })
})

const isRoot = process.getuid?.() === 0

describe.skipIf(!isRoot)('bad input: what even root may not write', () => {
  it('--out on a read-only file system: says so (Node’s mkdir -p said ENOENT)', async () => {
    const mountPoint = await temporaryFolder('ckan-migrate-ro-')
    try {
      await execFileAsync('mount', ['-t', 'tmpfs', '-o', 'size=64k,ro', 'tmpfs', mountPoint])
    } catch {
      return // no mount allowed here
    }
    onTestFinished(() => execFileAsync('umount', [mountPoint]).then(() => undefined))
    const site = await startTestSite({users: 5, version: '2.9'})
    await expectRefused(issueTokensArgs(site, join(mountPoint, 'run')), {
      code: 'writeFailed',
      message: /^Cannot write into the run folder .*\/run: it is on a read-only file system$/,
    })
  }, 120_000)

  it('an immutable ckan.ini (chattr +i) as root: says it may be immutable, not "run as root"', async () => {
    const dir = await temporaryFolder('ckan-migrate-immutable-')
    const ini = join(dir, 'ckan.ini')
    await copyFile(fileURLToPath(new URL('../fixtures/rewrite-config/generated-2.9.ini', import.meta.url)), ini)
    await writeFile(join(dir, 'xloader.token'), 'eyJhbGciOiJIUzI1NiJ9.eyJqdGkiOiJ4bCJ9.c2lnbmF0dXJl\n', {mode: 0o600})
    try {
      await execFileAsync('chattr', ['+i', ini])
    } catch {
      return // the file system has no immutable flag
    }
    onTestFinished(() => execFileAsync('chattr', ['-i', ini]).then(() => undefined))
    await expectRefused(['rewrite-config', '--ckan-ini', ini, '--token-file', join(dir, 'xloader.token')], {
      code: 'writeFailed',
      message: /^Operation not permitted even as root: .*ckan\.ini \(it may be immutable or append-only\)$/,
      suggestion: /lsattr .*ckan\.ini; chattr -i/,
    })
  })
})
