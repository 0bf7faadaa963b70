import {chmod, cp, mkdtemp, readdir, readFile, rm, stat, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {afterEach, describe, expect, it} from 'vitest'

import {splitLines} from '../../src/lib/services/ini-editor.js'
import {rewriteServiceConfigs} from '../../src/lib/workflows/rewrite-config.js'
import type {RewriteConfigResult} from '../../src/lib/workflows/rewrite-config.js'
import {runCli, runCliJson} from '../helpers/run-cli.js'

const FIXTURES = fileURLToPath(new URL('../fixtures/rewrite-config/', import.meta.url))
// Shaped like CKAN tokens (JWTs); never sent anywhere: these runs do not talk to CKAN.
const XLOADER_TOKEN =
  'eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJqdGkiOiJ4bG9hZGVyLWp0aSIsImlhdCI6MTcwMDAwMDAwMH0.eGxvYWRlci1zaWduYXR1cmU'
const DATAPUSHER_TOKEN =
  'eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJqdGkiOiJkcC1qdGkiLCJpYXQiOjE3MDAwMDAwMDB9.ZHAtc2lnbmF0dXJl'

let folders: string[] = []
afterEach(async () => {
  for (const folder of folders) await rm(folder, {force: true, recursive: true})
  folders = []
})

/** A private copy of the fixtures plus token files, so each test may write. */
async function workspace(): Promise<{dir: string; path: (name: string) => string}> {
  const dir = await mkdtemp(join(tmpdir(), 'rewrite-config-'))
  folders.push(dir)
  await cp(FIXTURES, dir, {recursive: true})
  await writeFile(join(dir, 'xloader.token'), `${XLOADER_TOKEN}\n`, {mode: 0o600})
  await writeFile(join(dir, 'datapusher.token'), `${DATAPUSHER_TOKEN}\n`, {mode: 0o600})
  return {dir, path: (name) => join(dir, name)}
}

/**
 * Proves every untouched byte stayed: drop the lines the command says it inserted, and the file
 * must be the original except at the lines it says it replaced.
 */
function expectOnlyReportedLinesChanged(
  before: string,
  after: string,
  changes: RewriteConfigResult['files'][number]['changes'],
): void {
  const inserted = new Set(changes.filter((change) => change.action !== 'replace').map((change) => change.line))
  const replacedAfter = new Set(changes.filter((change) => change.action === 'replace').map((change) => change.line))
  const oldSplit = splitLines(before)
  const newSplit = splitLines(after)
  expect(newSplit.bom).toBe(oldSplit.bom)
  const kept = newSplit.lines.map((line, index) => ({index: index + 1, line})).filter(({index}) => !inserted.has(index))
  expect(kept).toHaveLength(oldSplit.lines.length)
  for (const [position, {index, line}] of kept.entries()) {
    const old = oldSplit.lines[position]!
    if (replacedAfter.has(index)) expect(line.eol).toBe(old.eol)
    else expect(line).toEqual(old)
  }
}

async function backupsIn(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((name) => name.endsWith('.bak')).sort()
}

describe('rewrite-config on files (no CKAN: tokens from --token-file)', () => {
  it('rewrites a generated 2.9 ckan.ini exactly as the golden file says, keeps mode, backs up, and a second run is a no-op', async () => {
    const ws = await workspace()
    const ini = ws.path('generated-2.9.ini')
    await chmod(ini, 0o640)
    const before = await readFile(ini, 'utf8')
    const args = [
      'rewrite-config',
      '--ckan-ini',
      ini,
      '--token-file',
      `xloader=${ws.path('xloader.token')}`,
      '--token-file',
      `datapusher=${ws.path('datapusher.token')}`,
    ]
    const first = await runCliJson<RewriteConfigResult>(args)
    expect(first.exitCode, first.stdout).toBe(0)
    const after = await readFile(ini, 'utf8')
    expect(after).toBe(await readFile(join(FIXTURES, 'expected/generated-2.9.ini'), 'utf8'))
    const result = first.json.result!
    expect(result.services.map((service) => [service.service, service.tokenSource])).toEqual([
      ['datapusher', 'token-file'],
      ['xloader', 'token-file'],
    ])
    expect(result.secretPinning).toEqual({
      from: 'beaker.session.secret',
      keys: ['api_token.jwt.encode.secret', 'api_token.jwt.decode.secret'],
    })
    expectOnlyReportedLinesChanged(before, after, result.files[0]!.changes)
    expect((await stat(ini)).mode & 0o777).toBe(0o640)
    const [backup] = await backupsIn(ws.dir)
    expect(backup).toMatch(/^generated-2\.9\.ini\.\d{8}T\d{6}Z\.bak$/)
    expect(await readFile(ws.path(backup!), 'utf8')).toBe(before)
    // The backup holds the same secrets and only the admin restoring it reads it: owner-only.
    expect((await stat(ws.path(backup!))).mode & 0o777).toBe(0o600)
    expect(first.stdout).not.toContain(XLOADER_TOKEN)
    expect(first.stdout).not.toContain('Mwuz')

    const second = await runCli(args)
    expect(second.exitCode).toBe(0)
    expect(second.stdout).toContain('Nothing to change')
    expect(await readFile(ini, 'utf8')).toBe(after)
    expect(await backupsIn(ws.dir)).toEqual([backup])
  })

  it('keeps CRLF, the BOM, unicode and the missing final newline, and puts the token after the commented-out key', async () => {
    const ws = await workspace()
    const ini = ws.path('crlf-bom.ini')
    const before = await readFile(ini, 'utf8')
    const run = await runCliJson<RewriteConfigResult>([
      'rewrite-config',
      '--ckan-ini',
      ini,
      '--token-file',
      ws.path('xloader.token'),
    ])
    expect(run.exitCode, run.stdout).toBe(0)
    const after = await readFile(ini, 'utf8')
    expect(after).toBe(await readFile(join(FIXTURES, 'expected/crlf-bom.ini'), 'utf8'))
    expectOnlyReportedLinesChanged(before, after, run.json.result!.files[0]!.changes)
    expect(run.json.result!.files[0]!.changes[0]).toMatchObject({
      action: 'insert-after-comment',
      setting: 'ckanext.xloader.api_token',
    })
  })

  it('sets ckanext-envvars variables in a docker env file, keeping its style', async () => {
    const ws = await workspace()
    const envFile = ws.path('docker.env')
    const before = await readFile(envFile, 'utf8')
    const run = await runCliJson<RewriteConfigResult>([
      'rewrite-config',
      '--env-file',
      envFile,
      '--token-file',
      ws.path('datapusher.token'),
    ])
    expect(run.exitCode, run.stdout).toBe(0)
    const after = await readFile(envFile, 'utf8')
    expect(after).toBe(await readFile(join(FIXTURES, 'expected/docker.env'), 'utf8'))
    expectOnlyReportedLinesChanged(before, after, run.json.result!.files[0]!.changes)
    expect(
      (await runCli(['rewrite-config', '--env-file', envFile, '--token-file', ws.path('datapusher.token')])).stdout,
    ).toContain('Nothing to change')
  })

  it('edits the file of a use = config: chain that defines each key, or only the top file with --chain-target top', async () => {
    const ws = await workspace()
    const top = ws.path('chain/site.ini')
    const base = ws.path('chain/base.ini')
    const run = await runCliJson<RewriteConfigResult>([
      'rewrite-config',
      '--ckan-ini',
      top,
      '--token-file',
      ws.path('xloader.token'),
    ])
    expect(run.exitCode, run.stdout).toBe(0)
    expect(await readFile(base, 'utf8')).toBe(
      await readFile(join(FIXTURES, 'expected/chain-defining/base.ini'), 'utf8'),
    )
    expect(await readFile(top, 'utf8')).toBe(await readFile(join(FIXTURES, 'expected/chain-defining/site.ini'), 'utf8'))

    const ws2 = await workspace()
    const baseBefore = await readFile(ws2.path('chain/base.ini'), 'utf8')
    const topRun = await runCliJson<RewriteConfigResult>([
      'rewrite-config',
      '--ckan-ini',
      ws2.path('chain/site.ini'),
      '--token-file',
      ws2.path('xloader.token'),
      '--chain-target',
      'top',
    ])
    expect(topRun.exitCode, topRun.stdout).toBe(0)
    expect(await readFile(ws2.path('chain/base.ini'), 'utf8')).toBe(baseBefore)
    expect(await readFile(ws2.path('chain/site.ini'), 'utf8')).toBe(
      await readFile(join(FIXTURES, 'expected/chain-top/site.ini'), 'utf8'),
    )
  })

  it('--dry-run prints a redacted diff and writes nothing', async () => {
    const ws = await workspace()
    const ini = ws.path('generated-2.9.ini')
    const before = await readFile(ini, 'utf8')
    const run = await runCli([
      'rewrite-config',
      '--ckan-ini',
      ini,
      '--also',
      ws.path('crlf-bom.ini'),
      '--token-file',
      ws.path('xloader.token'),
      '--dry-run',
      '--fix-header',
    ])
    expect(run.exitCode, run.stderr).toBe(0)
    expect(run.stdout).toContain('+ckanext.xloader.api_token = ***(')
    expect(run.stdout).toContain('+apitoken_header_name = Authorization')
    expect(run.stdout).toContain('Dry run: nothing was written')
    for (const secret of [XLOADER_TOKEN, 'Mwuz', 's3cr', 'pass@localhost']) {
      expect(run.stdout).not.toContain(secret)
      expect(run.stderr).not.toContain(secret)
    }
    expect(await readFile(ini, 'utf8')).toBe(before)
    expect(await backupsIn(ws.dir)).toEqual([])
  })

  it('refuses a file with a duplicated key, a file without [app:main], a folder, a read-only file and an unknown service', async () => {
    const ws = await workspace()
    const token = ['--token-file', ws.path('xloader.token')]
    const cases: Array<[string[], number, RegExp]> = [
      [
        ['--ckan-ini', ws.path('duplicated.ini')],
        7,
        /sets ckan\.plugins more than once in \[app:main\] \(lines 5, 6\)/,
      ],
      [['--ckan-ini', ws.path('no-app-main.ini')], 7, /has no \[app:main\] section/],
      [['--ckan-ini', ws.path('chain')], 7, /is a folder, not a file/],
      [
        ['--ckan-ini', ws.path('generated-2.9.ini'), '--service', 'xloader', '--service', 'harvest'],
        7,
        /Unknown service: harvest/,
      ],
    ]
    await chmod(ws.path('crlf-bom.ini'), 0o444)
    cases.push([['--ckan-ini', ws.path('crlf-bom.ini')], 13, /is read-only \(mode 0444\)/])
    for (const [args, exitCode, message] of cases) {
      const run = await runCliJson(['rewrite-config', ...args, ...token])
      expect(run.exitCode, args.join(' ')).toBe(exitCode)
      expect(run.json.error!.message).toMatch(message)
      expect(run.json.error!.message).not.toContain('\n')
      expect(run.json.error!.suggestion).toBeTruthy()
    }
    expect(await readFile(ws.path('duplicated.ini'), 'utf8')).toBe(
      await readFile(join(FIXTURES, 'duplicated.ini'), 'utf8'),
    )
    expect(await backupsIn(ws.dir)).toEqual([])
  })

  it('refuses (exit 14) to overwrite a file that changed after it was read', async () => {
    const ws = await workspace()
    const ini = ws.path('generated-2.9.ini')
    const error = await rewriteServiceConfigs({
      alsoPaths: [],
      chainTarget: 'defining',
      ckanIniPath: ini,
      dryRun: false,
      envFilePaths: [],
      fixHeader: false,
      async onBeforeReplace(path) {
        await writeFile(path, '# edited by someone else\n', {flag: 'a'})
      },
      services: [],
      tokenFiles: [ws.path('xloader.token')],
      tokenLifetimeDays: 365,
    }).catch((error_: unknown) => error_)
    expect(error).toMatchObject({exitCode: 14})
    expect(await readFile(ini, 'utf8')).toMatch(/# edited by someone else\n$/)
    expect(await readFile(ini, 'utf8')).not.toContain('ckanext.xloader.api_token')
  })
})
