import {chmod, chown, cp, mkdtemp, readdir, rm, stat, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {afterEach, describe, expect, it} from 'vitest'

import type {RewriteConfigResult} from '../../src/lib/workflows/rewrite-config.js'
import {runCli, runCliJson} from '../helpers/run-cli.js'

// rewrite-config writes service tokens and the JWT signing secret into ckan.ini and env files:
// a world-readable file gets a warning with the exact fix, and backups are 0600 (issue 14.9).
const FIXTURES = fileURLToPath(new URL('../fixtures/rewrite-config/', import.meta.url))
const TOKEN =
  'eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJqdGkiOiJ4bG9hZGVyLWp0aSIsImlhdCI6MTcwMDAwMDAwMH0.eGxvYWRlci1zaWduYXR1cmU'
const isRoot = process.getuid?.() === 0

let folders: string[] = []
afterEach(async () => {
  for (const folder of folders) await rm(folder, {force: true, recursive: true})
  folders = []
})

async function workspace(): Promise<{dir: string; path: (name: string) => string}> {
  const dir = await mkdtemp(join(tmpdir(), 'rewrite-exposure-'))
  folders.push(dir)
  await cp(FIXTURES, dir, {recursive: true})
  await writeFile(join(dir, 'service.token'), `${TOKEN}\n`, {mode: 0o600})
  return {dir, path: (name) => join(dir, name)}
}

async function backupOf(dir: string, name: string): Promise<string> {
  const backups = (await readdir(dir)).filter((file) => file.startsWith(`${name}.`) && file.endsWith('.bak'))
  expect(backups).toHaveLength(1)
  return join(dir, backups[0]!)
}

/** oclif wraps a warning to the terminal's width (` ›   ` at each line's start): one line again. */
const unwrapped = (stderr: string) => stderr.replaceAll(/\s*\n ›\s*/g, ' ')

const modeOf = async (path: string) => (await stat(path)).mode & 0o777

describe('rewrite-config and who can read the files it puts tokens in', () => {
  it('warns once about a world-readable ckan.ini with the chown/chmod that keeps CKAN reading it, and backs it up 0600', async () => {
    const ws = await workspace()
    const ini = ws.path('generated-2.9.ini')
    await chmod(ini, 0o644)
    const info = await stat(ini)
    const run = await runCliJson<RewriteConfigResult>([
      'rewrite-config',
      '--ckan-ini',
      ini,
      '--token-file',
      ws.path('service.token'),
    ])
    expect(run.exitCode, run.stdout).toBe(0)
    const exposure = run.json.warnings.filter((warning) => warning.includes('every user of this machine can read it'))
    expect(exposure).toHaveLength(1)
    const owner = info.uid === 0 && info.gid === 0
    expect(exposure[0]).toBe(
      owner
        ? `${ini} holds API tokens (or the JWT signing secret) and every user of this machine can read it (mode 0644, owner root:root): chown root:www-data ${ini} && chmod 0640 ${ini} (www-data: the account CKAN's uWSGI and workers run as by default; put CKAN's own account's group if it differs).`
        : expect.stringContaining(`: chmod 0640 ${ini} (owner `),
    )
    // The file keeps its mode (only the admin knows CKAN's account); the backup is owner-only.
    expect(await modeOf(ini)).toBe(0o644)
    const backup = await backupOf(ws.dir, 'generated-2.9.ini')
    expect(await modeOf(backup)).toBe(0o600)
    expect((await stat(backup)).uid).toBe(info.uid)
    expect((await stat(backup)).gid).toBe(info.gid)
    expect(run.stdout).not.toContain(TOKEN)
  })

  it('shows the warning once on stderr in text mode, and says "would hold" in a dry run', async () => {
    const ws = await workspace()
    const ini = ws.path('generated-2.9.ini')
    await chmod(ini, 0o644)
    const args = ['rewrite-config', '--ckan-ini', ini, '--token-file', ws.path('service.token')]
    const dry = await runCli([...args, '--dry-run'])
    expect(dry.exitCode, dry.stderr).toBe(0)
    expect(unwrapped(dry.stderr).split(`${ini} would hold API tokens`)).toHaveLength(2)
    const real = await runCli(args)
    expect(real.exitCode, real.stderr).toBe(0)
    expect(unwrapped(real.stderr).split(`${ini} holds API tokens`)).toHaveLength(2)
    expect(unwrapped(real.stderr)).toContain(`chmod 0640 ${ini}`)
  })

  it('suggests only chmod 0640 when the group is already CKAN’s, and warns about nothing for a 0640 file', async () => {
    const ws = await workspace()
    const ini = ws.path('generated-2.9.ini')
    const args = ['rewrite-config', '--ckan-ini', ini, '--token-file', ws.path('service.token')]
    await chmod(ini, 0o640)
    const quiet = await runCliJson<RewriteConfigResult>([...args, '--dry-run'])
    expect(quiet.json.warnings.filter((warning) => warning.includes('can read it'))).toEqual([])
    if (!isRoot) return
    await chown(ini, 0, 33)
    await chmod(ini, 0o644)
    const run = await runCliJson<RewriteConfigResult>(args)
    expect(run.exitCode, run.stdout).toBe(0)
    const [warning] = run.json.warnings.filter((text) => text.includes('can read it'))
    expect(warning).toContain(`(mode 0644, owner root:www-data): chmod 0640 ${ini} (owner root and group www-data keep`)
    expect(warning).not.toContain('chown')
    const backup = await backupOf(ws.dir, 'generated-2.9.ini')
    expect(await modeOf(backup)).toBe(0o600)
    expect((await stat(backup)).gid).toBe(33)
  })

  it('warns about a world-readable env file too, and backs it up 0600', async () => {
    const ws = await workspace()
    const envFile = ws.path('docker.env')
    await chmod(envFile, 0o644)
    const run = await runCliJson<RewriteConfigResult>([
      'rewrite-config',
      '--env-file',
      envFile,
      '--token-file',
      ws.path('service.token'),
    ])
    expect(run.exitCode, run.stdout).toBe(0)
    const exposure = run.json.warnings.filter((warning) => warning.includes('can read it'))
    expect(exposure).toHaveLength(1)
    expect(exposure[0]).toContain(`${envFile} holds API tokens`)
    expect(exposure[0]).toContain(`: chmod 0640 ${envFile} (docker compose reads it as the user who runs it`)
    expect(await modeOf(envFile)).toBe(0o644)
    expect(await modeOf(await backupOf(ws.dir, 'docker.env'))).toBe(0o600)
  })
})
