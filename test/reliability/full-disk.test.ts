import {execFile} from 'node:child_process'
import {mkdtemp, readdir, readFile, rm, stat, statfs, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {promisify} from 'node:util'
import {describe, expect, it, onTestFinished} from 'vitest'

import {EXIT_CODES} from '../../src/lib/errors.js'
import {JsonlFile} from '../../src/lib/run/jsonl-file.js'
import {runCliJson} from '../helpers/run-cli.js'
import {expectOneStoredTokenPerSelectedUser} from '../helpers/run-state.js'
import {issueTokensArgs} from '../helpers/site-commands.js'
import {startTestSite} from '../helpers/test-site.js'

const execFileAsync = promisify(execFile)

/**
 * A real small file system: a tmpfs of `size` mounted on a new folder (root only), unmounted
 * when the test finishes. Undefined where mounting is not allowed (then the test is skipped).
 */
async function smallDisk(size: string): Promise<{path: string; resize: (size: string) => Promise<void>} | undefined> {
  const path = await mkdtemp(join(tmpdir(), 'ckan-migrate-small-disk-'))
  try {
    await execFileAsync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'tmpfs', path])
  } catch {
    await rm(path, {force: true, recursive: true})
    return undefined
  }
  onTestFinished(async () => {
    await execFileAsync('umount', [path]).catch(() => {})
    await rm(path, {force: true, recursive: true})
  })
  return {
    path,
    resize: async (newSize) => {
      await execFileAsync('mount', ['-o', `remount,size=${newSize}`, path])
    },
  }
}

const canMount = process.getuid?.() === 0

/** Fills the disk at `path` with a file until fewer than `leave` bytes stay free. */
async function fillDisk(path: string, leave: number): Promise<string> {
  const info = await statfs(path)
  const free = info.bavail * info.bsize
  const filler = join(path, 'filler')
  await writeFile(filler, Buffer.alloc(Math.max(0, free - leave)))
  return filler
}

describe.skipIf(!canMount)('a full disk (a real 64 KiB tmpfs)', () => {
  it('JsonlFile: a failed append leaves the file as it was, the error names the file and the bytes needed', async () => {
    const disk = await smallDisk('64k')
    if (!disk) return
    const path = join(disk.path, 'tokens.jsonl')
    const file = new JsonlFile<{n: number; pad: string}>(path)
    await file.append({n: 1, pad: 'x'})
    const before = await readFile(path, 'utf8')
    const filler = await fillDisk(disk.path, 512)
    // Bigger than what is left: the write gets part-way (a page or two) and then ENOSPC.
    const error = (await file.append({n: 2, pad: 'y'.repeat(20_000)}).catch((error_: unknown) => error_)) as
      (NodeJS.ErrnoException & {bytesNeeded?: number}) | undefined
    expect(error?.code).toBe('ENOSPC')
    expect(error?.path).toBe(path)
    expect(error?.bytesNeeded).toBeGreaterThan(20_000)
    expect(await readFile(path, 'utf8')).toBe(before)

    await rm(filler)
    await file.append({n: 3, pad: 'z'})
    await file.close()
    expect((await file.readAll()).map((record) => record.n)).toEqual([1, 3])
  })

  it('issue-tokens on a disk that fills mid-run: exit 13 naming the file and the space needed; every line whole, the rerun reconciles (SQL)', async () => {
    const site = await startTestSite({users: 60, version: '2.9'})
    const disk = await smallDisk('64k')
    if (!disk) return
    const out = join(disk.path, 'run')
    const args = issueTokensArgs(site, out, '--concurrency', '4')
    // Enough for the start-up check (512 bytes a key holder), the run's first files (a 4 KiB
    // page each on tmpfs) and the first users, not for all of them (about 1.1 KiB each).
    const filler = await fillDisk(disk.path, 40 * 1024)
    const full = await runCliJson(args)
    expect(full.exitCode, full.stdout).toBe(EXIT_CODES.writeFailed)
    expect(full.json.error?.message).toMatch(/^No space left on the device: .*\/run\/\S+ \(.+ were needed\)$/)
    // Every line on disk is whole: nothing half-written.
    for (const name of await readdir(out)) {
      if (!name.endsWith('.jsonl')) continue
      const text = await readFile(join(out, name), 'utf8')
      if (text !== '') expect(text.endsWith('\n'), name).toBe(true)
    }

    await rm(filler)
    await disk.resize('4m')
    const rerun = await runCliJson(args)
    expect(rerun.exitCode, rerun.stdout).toBe(0)
    // In SQL: exactly one token of the run per selected user, each of them in tokens.jsonl.
    await expectOneStoredTokenPerSelectedUser(site, out)
    expect((await stat(join(out, 'tokens.jsonl'))).size).toBeGreaterThan(0)
  }, 300_000)

  it('issue-tokens refuses to start when the disk is clearly too small for the users selected', async () => {
    const site = await startTestSite({users: 600, version: '2.9'})
    const disk = await smallDisk('64k')
    if (!disk) return
    const out = join(disk.path, 'run')
    const client = await import('pg').then(({default: pg}) => new pg.Client({connectionString: site.databaseUrl}))
    await client.connect()
    onTestFinished(() => client.end())
    const tokens = async () => (await client.query('SELECT count(*)::int AS n FROM api_token')).rows[0].n as number
    const before = await tokens()
    const run = await runCliJson(issueTokensArgs(site, out))
    expect(run.exitCode, run.stdout).toBe(EXIT_CODES.writeFailed)
    expect(run.json.error?.message).toMatch(/^Not enough free space for .* in .*run: about .* are needed, .* are free$/)
    // Before any work: CKAN holds no new token.
    expect(await tokens()).toBe(before)
  }, 300_000)
})
