import {execFile} from 'node:child_process'
import {constants} from 'node:fs'
import {mkdir, mkdtemp, open, readFile, rm, stat, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {promisify} from 'node:util'
import {describe, expect, it, onTestFinished} from 'vitest'

import {EXIT_CODES, MigrateError} from '../../../src/lib/errors.js'
import {openRunFolder} from '../../../src/lib/run/run-folder.js'
import {Secret} from '../../../src/lib/secret.js'

const SITE = {ckanUrl: 'http://127.0.0.1:5000/', siteUserName: 'default'}

async function expectMigrateError(promise: Promise<unknown>, exitCode: number) {
  const error = await promise.then(
    () => undefined,
    (error_: unknown) => error_,
  )
  expect(error).toBeInstanceOf(MigrateError)
  expect((error as MigrateError).exitCode).toBe(exitCode)
  return error as MigrateError
}

describe('run folder', () => {
  it('is created private, stores tokens durably and keeps them out of the journal', async () => {
    const root = await mkdtemp(join(tmpdir(), 'run-'))
    const run = await openRunFolder(join(root, 'out'), {create: true, site: SITE})
    expect((await stat(run.path)).mode & 0o777).toBe(0o700)
    await Promise.all(
      ['alice', 'bob', 'carol'].map((userName) =>
        run.storeToken({
          createdAt: '2026-11-22T00:00:00Z',
          jti: new Secret(`jti-${userName}`),
          source: 'issue-tokens',
          token: new Secret(`jwt-${userName}`),
          tokenName: 'ckan-migrate',
          userId: `id-${userName}`,
          userName,
        }),
      ),
    )
    await run.record({
      jtiFingerprint: 'abcd1234',
      kind: 'token-issued',
      tokenName: 'x',
      userId: 'id-alice',
      userName: 'alice',
    })
    const tokens = await run.readTokens()
    expect(tokens.map((token) => token.token.reveal()).sort()).toEqual(['jwt-alice', 'jwt-bob', 'jwt-carol'])
    expect((await stat(run.file('tokens.jsonl'))).mode & 0o777).toBe(0o600)
    expect((await stat(run.file('journal.jsonl'))).mode & 0o777).toBe(0o600)
    expect(await readFile(run.file('journal.jsonl'), 'utf8')).not.toMatch(/jwt-|jti-/)
    const again = await openRunFolder(run.path, {create: true, site: {ckanUrl: 'http://127.0.0.1:5000'}})
    expect(again.meta.runId).toBe(run.meta.runId)
  })

  it('ignores a torn last line left by a crash in the middle of a write', async () => {
    const root = await mkdtemp(join(tmpdir(), 'run-'))
    const run = await openRunFolder(join(root, 'out'), {create: true, site: SITE})
    await run.record({kind: 'run-started', command: 'issue-tokens', dryRun: false})
    await writeFile(run.file('journal.jsonl'), '{"kind":"user-fai', {flag: 'a'})
    expect(await run.journal.readAll()).toHaveLength(1)
  })

  it('refuses a run folder of another site, a folder with other files, and a second writer', async () => {
    const root = await mkdtemp(join(tmpdir(), 'run-'))
    const run = await openRunFolder(join(root, 'out'), {create: true, site: SITE})
    await expectMigrateError(
      openRunFolder(run.path, {create: true, site: {ckanUrl: 'https://other.example.org'}}),
      EXIT_CODES.runConflict,
    )
    await mkdir(join(root, 'home'))
    await writeFile(join(root, 'home', '.bashrc'), 'x')
    await expectMigrateError(openRunFolder(join(root, 'home'), {create: true, site: SITE}), EXIT_CODES.runConflict)
    await expectMigrateError(openRunFolder(join(root, 'missing'), {create: false}), EXIT_CODES.badInput)
    await writeFile(run.file('lock'), JSON.stringify({command: 'issue-tokens', pid: process.ppid}))
    const error = await expectMigrateError(run.lock('revoke'), EXIT_CODES.runConflict)
    expect(error.message).toContain('in use by issue-tokens')
  })
})

describe('openRunFolder on a run.json that is not a file', () => {
  it('refuses a FIFO as run.json at once (it hung waiting for a writer)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ckan-migrate-run-fifo-'))
    const path = join(dir, 'run.json')
    await promisify(execFile)('mkfifo', [path])
    onTestFinished(async () => {
      await (await open(path, constants.O_WRONLY | constants.O_NONBLOCK).catch(() => undefined))?.close()
      await rm(dir, {force: true, recursive: true})
    })
    const error = await expectMigrateError(openRunFolder(dir, {create: false}), EXIT_CODES.badInput)
    expect(error.message).toMatch(/run\.json: it is a named pipe \(FIFO\), not a regular file$/)
  })
})
