import {createServer, request} from 'node:http'
import type {AddressInfo} from 'node:net'
import {mkdtemp, readFile, rm, stat, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import pg from 'pg'
import {describe, expect, it, onTestFinished} from 'vitest'

import {readCkanIni} from '../../src/lib/site/ckan-ini.js'
import {rewriteServiceConfigs, type RewriteConfigOptions} from '../../src/lib/workflows/rewrite-config.js'
import {runCliChild} from '../helpers/run-cli-child.js'
import {runCliJson} from '../helpers/run-cli.js'
import {startTestSite, type TestSite} from '../helpers/test-site.js'

// Issue 14.10: two rewrite-config runs on one ckan.ini. The second must refuse before it makes a
// token, and a run that fails after making tokens must not leave them live and unused.

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'ckan-migrate-rewrite-lock-'))
  onTestFinished(() => rm(dir, {force: true, recursive: true}))
  return dir
}

/** The api_token rows (name, id) as CKAN's database holds them. */
async function apiTokens(site: TestSite): Promise<Array<{id: string; name: string}>> {
  const client = new pg.Client({connectionString: site.databaseUrl})
  await client.connect()
  try {
    return (await client.query<{id: string; name: string}>('SELECT id, name FROM api_token ORDER BY name')).rows
  } finally {
    await client.end()
  }
}

const runIdOf = async (out: string) => JSON.parse(await readFile(join(out, 'run.json'), 'utf8')).runId as string

/**
 * A proxy in front of the emulator that holds every api_token_create until `release()`: a run
 * going through it stops, deterministically, at its first token create, holding its locks.
 */
async function holdingProxy(target: string) {
  let release!: () => void
  const released = new Promise<void>((resolve) => (release = resolve))
  let reached!: () => void
  const holding = new Promise<void>((resolve) => (reached = resolve))
  const server = createServer((incoming, outgoing) => {
    const forward = () => {
      const upstream = request(
        new URL(incoming.url!, target),
        {headers: incoming.headers, method: incoming.method},
        (answer) => {
          outgoing.writeHead(answer.statusCode!, answer.headers)
          answer.pipe(outgoing)
        },
      )
      upstream.on('error', () => outgoing.destroy())
      incoming.pipe(upstream)
    }
    if (incoming.url?.includes('api_token_create')) {
      reached()
      void released.then(forward)
    } else forward()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  onTestFinished(() => {
    release()
    server.closeAllConnections()
    server.close()
  })
  return {holding, release, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`}
}

function args(site: TestSite, ckanUrl: string, out: string): string[] {
  return [
    'rewrite-config',
    '--ckan-ini',
    site.ckanIni,
    '--ckan-url',
    ckanUrl,
    '--api-key-file',
    site.apiKeyFile,
    '--out',
    out,
  ]
}

function apiOptions(site: TestSite, out: string): RewriteConfigOptions {
  return {
    alsoPaths: [],
    api: {apiKeyFile: site.apiKeyFile, ckanUrl: new URL(site.ckanUrl), timeoutMs: 5000},
    chainTarget: 'defining',
    ckanIniPath: site.ckanIni,
    dryRun: false,
    envFilePaths: [],
    fixHeader: false,
    out,
    services: [],
    tokenFiles: [],
    tokenLifetimeDays: 365,
  }
}

describe('rewrite-config runs that meet on one ckan.ini', () => {
  it('a second run refuses (exit 5) while the first holds the file, creating no token; the first then finishes', async () => {
    const site = await startTestSite({apiTokenLines: false, users: 4, version: '2.9'})
    const dir = await tempDir()
    const [firstOut, secondOut] = [join(dir, 'first'), join(dir, 'second')]
    const before = await apiTokens(site)
    const proxy = await holdingProxy(site.ckanUrl)

    // The first run, a real process, stops at its first api_token_create (locks taken).
    const first = runCliChild(args(site, proxy.url, firstOut))
    const exitedEarly = first.then((run) => {
      throw new Error(`the first run ended before it created a token: ${run.output}`)
    })
    await Promise.race([proxy.holding, exitedEarly])

    const second = await runCliJson(args(site, site.ckanUrl, secondOut))
    expect(second.exitCode, second.stdout).toBe(5)
    expect(second.json.error!.message).toMatch(/ckan\.ini is being rewritten by another rewrite-config \(pid \d+/)
    expect(second.json.error!.suggestion).toContain('no token created')
    // CKAN gained no token from the second run (nor, yet, from the held first one).
    expect(await apiTokens(site)).toEqual(before)
    await expect(stat(join(secondOut, 'tokens.jsonl'))).rejects.toThrow(/ENOENT/)

    proxy.release()
    const done = await first
    expect(done.code, done.output).toBe(0)
    const firstRun = await runIdOf(firstOut)
    const added = (await apiTokens(site)).filter((row) => !before.some((old) => old.id === row.id))
    expect(added).toHaveLength(2)
    for (const row of added) expect(row.name).toContain(firstRun)
    // What the file holds are the first run's tokens: none is left unused.
    const stored = (await readFile(join(firstOut, 'tokens.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as {token: string})
    const ini = await readCkanIni(site.ckanIni)
    expect([ini.get('ckan.datapusher.api_token'), ini.get('ckanext.xloader.api_token')].sort()).toEqual(
      stored.map((token) => token.token).sort(),
    )
    // The lock is gone with the run.
    await expect(stat(`${site.ckanIni}.ckan-migrate-lock`)).rejects.toThrow(/ENOENT/)
  })

  it('takes over a lock left by a killed run (its pid is gone)', async () => {
    const site = await startTestSite({apiTokenLines: false, users: 4, version: '2.9'})
    const out = join(await tempDir(), 'run')
    const gone = 2 ** 22 + 1 // above the highest pid_max Linux allows: no such process
    await writeFile(`${site.ckanIni}.ckan-migrate-lock`, JSON.stringify({command: 'rewrite-config', pid: gone}))
    const run = await runCliJson(args(site, site.ckanUrl, out))
    expect(run.exitCode, run.stdout).toBe(0)
  })

  it('revokes the tokens of a run that failed before any file held them, so a rerun makes new ones', async () => {
    const site = await startTestSite({apiTokenLines: false, users: 4, version: '2.9'})
    const out = join(await tempDir(), 'run')
    const before = await apiTokens(site)
    const error = await rewriteServiceConfigs({
      ...apiOptions(site, out),
      async onBeforeReplace(path) {
        // Someone edits ckan.ini by hand while the tokens are being made: nothing may be written.
        await writeFile(path, '# edited by someone else\n', {flag: 'a'})
      },
    }).catch((error_: unknown) => error_)
    expect(error).toMatchObject({exitCode: 14})
    expect((error as {suggestion: string}).suggestion).toContain('The 2 token(s) this run had made were revoked.')
    expect(await apiTokens(site)).toEqual(before)
    expect(await readFile(join(out, 'journal.jsonl'), 'utf8')).toContain('"kind":"token-revoked"')

    const rerun = await runCliJson(args(site, site.ckanUrl, out))
    expect(rerun.exitCode, rerun.stdout).toBe(0)
    const ini = await readCkanIni(site.ckanIni)
    const live = (await apiTokens(site)).filter((row) => !before.some((old) => old.id === row.id))
    expect(live).toHaveLength(2)
    expect(ini.get('ckanext.xloader.api_token')).toBeDefined()
  })

  it('keeps the token a written file holds and revokes only the one no file got', async () => {
    const site = await startTestSite({apiTokenLines: false, users: 4, version: '2.9'})
    const dir = await tempDir()
    const out = join(dir, 'run')
    // A chain: the top file overrides nothing; ckan.ini (the base) holds the xloader key with a
    // legacy key, so xloader's token goes there and datapusher's into the top file, written first.
    const base = await readFile(site.ckanIni, 'utf8')
    await writeFile(
      site.ckanIni,
      base.replace('[app:main]\n', '[app:main]\nckanext.xloader.api_token = 0b6b3a42-1e36-4c8b-9d55-5f2b1c3f0a11\n'),
    )
    const top = join(dir, 'top.ini')
    await writeFile(top, `[app:main]\nuse = config:${site.ckanIni}\n`)
    const before = await apiTokens(site)
    const error = await rewriteServiceConfigs({
      ...apiOptions(site, out),
      ckanIniPath: top,
      async onBeforeReplace(path) {
        if (path === site.ckanIni) await writeFile(path, '# edited by someone else\n', {flag: 'a'})
      },
    }).catch((error_: unknown) => error_)
    expect(error).toMatchObject({exitCode: 14})
    const {suggestion} = error as {suggestion: string}
    expect(suggestion).toContain(
      'The tokens for datapusher are in a written file: a rerun with the same --out reuses them.',
    )
    expect(suggestion).toContain('The 1 token(s) this run had made were revoked.')
    const live = (await apiTokens(site)).filter((row) => !before.some((old) => old.id === row.id))
    expect(live.map((row) => row.name)).toEqual([expect.stringContaining('ckan-migrate datapusher ')])
    expect(await readFile(top, 'utf8')).toContain('ckan.datapusher.api_token = ')
  })

  it('names the tokens it could not revoke and the commands that revoke them', async () => {
    const site = await startTestSite({apiTokenLines: false, users: 4, version: '2.9'})
    const out = join(await tempDir(), 'run')
    const error = await rewriteServiceConfigs({
      ...apiOptions(site, out),
      async onBeforeReplace(path) {
        site.emulator.setFaults({actions: ['api_token_revoke'], status500: 1})
        await writeFile(path, '# edited by someone else\n', {flag: 'a'})
      },
    }).catch((error_: unknown) => error_)
    expect(error).toMatchObject({exitCode: 14})
    const {message, suggestion} = error as {message: string; suggestion: string}
    expect(message).toContain('changed on disk after ckan-migrate read it')
    const runId = await runIdOf(out)
    expect(suggestion).toContain('2 token(s) this run made are live but in no file and could not be revoked')
    expect(suggestion).toContain(`"ckan-migrate datapusher `)
    expect(suggestion).toContain(runId)
    expect(suggestion).toContain(`ckan -c ${site.ckanIni} user token list ${site.siteUserName} shows [id] name`)
    expect(suggestion).toContain(`ckan -c ${site.ckanIni} user token revoke <id>`)
    for (const row of await apiTokens(site)) expect(suggestion).not.toContain(row.id)
  })
})
