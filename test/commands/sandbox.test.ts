import {spawn} from 'node:child_process'
import {existsSync} from 'node:fs'
import {mkdtemp, readFile, rm, stat, writeFile} from 'node:fs/promises'
import {createServer, type Server} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {afterEach, describe, expect, it} from 'vitest'

import {PROJECT_ROOT, runCli} from '../helpers/run-cli.js'
import {REAL_POSTGRES_URL} from '../helpers/test-database.js'

const folders: string[] = []
async function tempFolder(): Promise<string> {
  const folder = await mkdtemp(join(tmpdir(), 'ckan-migrate-sandbox-'))
  folders.push(folder)
  return folder
}
afterEach(async () => {
  for (const folder of folders.splice(0)) await rm(folder, {force: true, recursive: true})
})

describe('ckan-migrate sandbox: bad input', () => {
  it('refuses an unknown --ckan-version as a usage error (exit 2)', async () => {
    const run = await runCli(['sandbox', '--ckan-version', '2.8', '--dir', await tempFolder()])
    expect(run.exitCode).toBe(2)
    expect(run.error?.message).toMatch(/2\.9, 2\.10, 2\.11/)
  })

  it('refuses an occupied --port with one line and exit 7, before creating anything', async () => {
    const server: Server = createServer()
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()))
    const port = (server.address() as {port: number}).port
    try {
      const dir = join(await tempFolder(), 'site')
      const run = await runCli(['sandbox', '--port', String(port), '--dir', dir])
      expect(run.exitCode).toBe(7)
      expect(run.error?.message).toBe(`Port ${port} on 127.0.0.1 is already in use`)
      expect(existsSync(join(dir, 'ckan.ini'))).toBe(false)
    } finally {
      server.close()
    }
  })

  it('refuses a --dir it may not create with exit 13, and one under a file with exit 7', async () => {
    // EPERM under /sys, even for root.
    const run = await runCli(['sandbox', '--dir', '/sys/ckan-migrate-sandbox'])
    expect(run.exitCode).toBe(13)
    expect(run.error?.message).toMatch(
      /^Cannot write into the sandbox folder .*: (EPERM|not permitted even as root \(.*\))$/,
    )
    const file = join(await tempFolder(), 'a-file')
    await writeFile(file, 'x')
    const underFile = await runCli(['sandbox', '--dir', join(file, 'sandbox')])
    expect(underFile.exitCode).toBe(7)
    expect(underFile.error?.message).toMatch(/cannot be created: a part of its path is a file, not a folder$/)
  })

  it('refuses malformed --faults with exit 7', async () => {
    const run = await runCli(['sandbox', '--faults', 'status503=7', '--dir', await tempFolder()])
    expect(run.exitCode).toBe(7)
    expect(run.error?.message).toBe('Fault settings: status503 is a rate and must be at most 1')
  })
})

describe('ckan-migrate sandbox', () => {
  it('starts a site, writes ckan.ini, a 0600 credential file and sandbox.json, serves CKAN, and stops cleanly on SIGINT', async () => {
    const dir = join(await tempFolder(), 'sandbox')
    const args = [
      'bin/dev.js',
      'sandbox',
      '--dir',
      dir,
      '--users',
      '40',
      '--ckan-version',
      '2.9',
      '--faults',
      'status503=1,actions=user_show',
    ]
    if (REAL_POSTGRES_URL) args.push('--database-url', REAL_POSTGRES_URL)
    const child = spawn(process.execPath, args, {
      cwd: PROJECT_ROOT,
      env: {...process.env, NODE_ENV: 'development'},
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
    try {
      const sandboxFile = join(dir, 'sandbox.json')
      for (let waited = 0; !existsSync(sandboxFile) && child.exitCode === null && waited < 240; waited++)
        await sleep(500)
      expect(existsSync(sandboxFile), stderr).toBe(true)
      const info = JSON.parse(await readFile(sandboxFile, 'utf8')) as Record<string, string>
      expect(Object.keys(info).sort()).toEqual(['apiKeyFile', 'ckanIni', 'ckanUrl', 'ckanVersion', 'databaseUrl'])
      expect(info.ckanVersion).toBe('2.9')
      expect((await stat(info.apiKeyFile!)).mode & 0o777).toBe(0o600)
      const key = (await readFile(info.apiKeyFile!, 'utf8')).trim()
      expect(key).toMatch(/^[\da-f]{8}-[\da-f]{4}-/)
      expect(await readFile(info.ckanIni!, 'utf8')).toContain(`ckan.site_url = ${info.ckanUrl}`)
      const status = (await (await fetch(`${info.ckanUrl}/api/3/action/status_show`)).json()) as {
        result: {ckan_version: string}
      }
      expect(status.result.ckan_version).toBe('2.9.11')
      const list = await fetch(`${info.ckanUrl}/api/3/action/api_token_list?user=admin`, {
        headers: {Authorization: key},
      })
      expect(list.status).toBe(200)
      expect((await fetch(`${info.ckanUrl}/api/3/action/user_show?id=admin`)).status).toBe(503)
      for (let waited = 0; !stdout.includes('sandbox.json:') && waited < 20; waited++) await sleep(250)
      expect(stdout).toContain(`CKAN URL:      ${info.ckanUrl}`)
      // Which 2.9 it models: users from before 2.9 hold keys, those created on 2.9.11 none.
      expect(stdout).toMatch(
        /Models: {8}a site that ran CKAN <= 2\.8 until 2021-03-01, then 2\.9\.11: \d+ users from before then \(the site user included\) hold legacy keys, \d+ created since hold none \(ckan\.auth\.create_default_api_keys = false, CKAN's default\)/,
      )
      expect(stdout + stderr).not.toContain(key)
      child.kill('SIGINT')
      expect(await exited).toBe(0)
      expect(existsSync(sandboxFile)).toBe(false)
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL')
    }
  })
})
