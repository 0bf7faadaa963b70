import {parse} from 'csv-parse/sync'
import {watch} from 'node:fs'
import {copyFile, readdir, readFile, rename, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'

import {runCli, runCliJson} from '../helpers/run-cli.js'
import {runCliChild} from '../helpers/run-cli-child.js'
import {type FixtureRun, makeCertificate, makeRun, zipJsRead} from '../lib/bundle/bundle-fixtures.js'

type Row = {email: string; file: string; password: string; user: string}

const SUFFIX = '.dcor-access'
const USERS = 120

/** The bundles a user sees in the folder: `<name>.dcor-access`, not our hidden temporary files. */
const isBundle = (name: string) => name.endsWith(SUFFIX) && !name.startsWith('.')

/**
 * Resolves once bundle names in `folder` changed `count` times (a bundle renamed into place, or an
 * old one removed): a kill point chosen by progress on disk, not by time.
 */
function afterBundleChanges(folder: string, count: number): {close: () => void; reached: Promise<void>} {
  let seen = 0
  let resolve!: () => void
  const reached = new Promise<void>((done) => (resolve = done))
  const watcher = watch(folder, (event, name) => {
    if (event === 'rename' && name && isBundle(name) && ++seen >= count) resolve()
  })
  return {close: () => watcher.close(), reached}
}

/** Every bundle on disk has a passwords.csv row, opens with that password, and holds its user's token. */
async function expectEveryBundleOpens(fixture: FixtureRun, bundleDir: string, label: string): Promise<number> {
  const rows = parse(await readFile(join(bundleDir, 'passwords.csv')), {bom: true, columns: true}) as Row[]
  const byFile = new Map(rows.map((row) => [row.file, row]))
  const bundles = (await readdir(bundleDir)).filter((name) => isBundle(name))
  const failures: string[] = []
  for (const file of bundles) {
    const row = byFile.get(file)
    if (!row) {
      failures.push(`${file}: no row`)
      continue
    }
    try {
      const opened = await zipJsRead(join(bundleDir, file), row.password)
      if (opened.apiKey !== `${fixture.tokens.get(row.user)!.token}\n`) failures.push(`${file}: another token`)
    } catch (error) {
      failures.push(`${file}: ${(error as Error).message}`)
    }
  }
  expect(failures, `${label}: ${failures.length} of ${bundles.length} bundles do not open`).toEqual([])
  return bundles.length
}

describe('bundle --force after kill -9', () => {
  it('leaves every bundle on disk opening with the password passwords.csv gives it, at every kill point, and no temporary file after the next run', async () => {
    const names = Array.from({length: USERS}, (_, index) => ({name: `user-${String(index).padStart(3, '0')}`}))
    const fixture = await makeRun(names)
    const {certPath} = await makeCertificate('dcor.example.org')
    const args = ['bundle', '--out', fixture.path, '--server-cert', certPath]
    const bundleDir = join(fixture.path, 'bundles')

    const first = await runCli(args)
    expect(first.exitCode, first.stderr).toBe(0)
    expect(await expectEveryBundleOpens(fixture, bundleDir, 'first run')).toBe(USERS)

    let killed = 0
    for (const changes of [1, 8, 30, 60, 100]) {
      const kill = afterBundleChanges(bundleDir, changes)
      const run = await runCliChild([...args, '--force'], {interrupt: {signal: 'SIGKILL', when: kill.reached}})
      kill.close()
      if (run.signalled) killed += 1
      else expect(run.code, run.output).toBe(0)
      await expectEveryBundleOpens(fixture, bundleDir, `killed after ${changes} bundle change(s)`)
    }
    expect(killed).toBeGreaterThanOrEqual(3)

    const next = await runCli(args)
    expect(next.exitCode, next.stderr).toBe(0)
    expect(await expectEveryBundleOpens(fixture, bundleDir, 'the run after the kills')).toBe(USERS)
    const left = (await readdir(bundleDir)).filter((name) => !isBundle(name) && name !== 'passwords.csv')
    expect(left, 'temporary files left behind').toEqual([])
  }, 240_000)
})

describe('bundle after a run killed mid-commit', () => {
  it('puts in place a staged bundle whose password passwords.csv already holds, and removes every other temporary file', async () => {
    const fixture = await makeRun([{name: 'alice'}, {name: 'bob'}, {name: 'carol'}])
    const {certPath} = await makeCertificate('dcor.example.org')
    const args = ['bundle', '--out', fixture.path, '--server-cert', certPath]
    expect((await runCli(args)).exitCode).toBe(0)
    const bundleDir = join(fixture.path, 'bundles')
    const csv = await readFile(join(bundleDir, 'passwords.csv'))
    const at = (name: string) => join(bundleDir, name)
    // Killed after passwords.csv named alice's new bundle, before its rename: only the staged copy is left.
    await rename(at('alice.dcor-access'), at('.alice.dcor-access.0123456789ab.staged'))
    // A staged bundle whose password never reached passwords.csv (it holds bob's bundle, not carol's password).
    await rename(at('carol.dcor-access'), at('.carol.dcor-access.456789abcdef.partial'))
    await copyFile(at('bob.dcor-access'), at('.carol.dcor-access.abcdef012345.staged'))
    // A staged bundle beside the bundle it was to replace, and a half-written passwords.csv.
    await copyFile(at('bob.dcor-access'), at('.bob.dcor-access.fedcba987654.staged'))
    await writeFile(at('.passwords.csv.00000000000a.partial'), 'user,email,fi')

    const rerun = await runCliJson<{bundles: Array<{outcome: string; userName: string}>}>(args)
    expect(rerun.exitCode, rerun.stderr).toBe(0)
    expect(rerun.json.result!.bundles.map((bundle) => `${bundle.userName}:${bundle.outcome}`)).toEqual([
      'alice:kept',
      'bob:kept',
      'carol:written',
    ])
    expect((await readdir(bundleDir)).sort()).toEqual([
      'alice.dcor-access',
      'bob.dcor-access',
      'carol.dcor-access',
      'passwords.csv',
    ])
    expect(await expectEveryBundleOpens(fixture, bundleDir, 'after the cleanup')).toBe(3)
    const rows = parse(await readFile(join(bundleDir, 'passwords.csv')), {bom: true, columns: true}) as Row[]
    const before = parse(csv, {bom: true, columns: true}) as Row[]
    for (const user of ['alice', 'bob'])
      expect(rows.find((row) => row.user === user)!.password).toBe(before.find((row) => row.user === user)!.password)
  })
})
