/**
 * The three things a CKAN admin installs, built once by `buildRelease` (what `npm run release`
 * runs) and then run the way an admin would run them:
 * - the single executable, with a PATH on which there is no node;
 * - the .deb, unpacked with `dpkg -x` into a scratch root, its /usr/bin/ckan-migrate link;
 * - the npm tarball, installed with `npm install -g --prefix` into a scratch prefix.
 * `audit` reads a seeded CKAN 2.9 database on the real PostgreSQL server when
 * CKAN_MIGRATE_TEST_POSTGRES_URL is set (as in CI), else on PGlite.
 */
import {execFile, spawn} from 'node:child_process'
import {createHash} from 'node:crypto'
import {mkdtemp, readdir, readFile, readlink, rm, stat} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'
import {promisify} from 'node:util'
import pg from 'pg'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {buildRelease, type ReleaseManifest} from '../../scripts/release/release.js'
import {CKAN_VERSIONS as CKAN_MAJORS} from '../../src/lib/site/ckan-version.js'
import {createCkanSchema} from '../../src/sandbox/ckan-schema.js'
import {seedCkanSite} from '../../src/sandbox/ckan-site-seeder.js'
import type {AuditResult} from '../../src/lib/workflows/audit.js'
import {createTestDatabase, REAL_POSTGRES_URL, type TestDatabase} from '../helpers/test-database.js'

const execFileAsync = promisify(execFile)
const PACKAGE = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as {version: string}
const VERSION = PACKAGE.version

type Run = {code: null | number; output: string; stdout: string}

/** Runs a program with exactly `env` (nothing inherited), collecting stdout and stderr. */
async function run(program: string, args: string[], env: Record<string, string>, cwd: string): Promise<Run> {
  const child = spawn(program, args, {cwd, env, stdio: ['ignore', 'pipe', 'pipe']})
  const out: Buffer[] = []
  const all: Buffer[] = []
  child.stdout.on('data', (chunk: Buffer) => (out.push(chunk), all.push(chunk)))
  child.stderr.on('data', (chunk: Buffer) => all.push(chunk))
  const code = await new Promise<null | number>((resolve) => child.on('close', (exit) => resolve(exit)))
  return {code, output: Buffer.concat(all).toString('utf8'), stdout: Buffer.concat(out).toString('utf8')}
}

async function sha256(file: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(file))
    .digest('hex')
}

let out: string
let scratch: string
let manifest: ReleaseManifest
let site: TestDatabase
/** Legacy keys in the seeded database, counted by SQL here, not by the audit. */
let keysInDatabase: number
/** A PATH with no node on it: an empty folder. */
let noNodePath: string

function file(kind: 'deb' | 'npm' | 'sea'): string {
  const found = manifest.artifacts.find((artifact) => artifact.kind === kind)
  if (!found) throw new Error(`no ${kind} artifact`)
  return join(out, found.file)
}

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'release-test-'))
  out = join(scratch, 'release')
  noNodePath = await mkdtemp(join(scratch, 'empty-path-'))
  // xz would spend a minute of CPU on the .deb; the contents are the same uncompressed.
  manifest = await buildRelease({arches: ['x64'], debCompression: 'none', out})
  site = await createTestDatabase({autoRelease: false})
  const client = new pg.Client({connectionString: site.url})
  await client.connect()
  await createCkanSchema(client, '2.9', {harvest: true})
  await seedCkanSite(client, {
    adminApiKey: '5f0e2c3a-1b2c-4d5e-8f90-0123456789ab',
    seed: 'release',
    siteId: 'default',
    users: 200,
    version: '2.9',
  })
  const {rows} = await client.query<{keys: number}>('SELECT count(*)::int AS keys FROM "user" WHERE apikey IS NOT NULL')
  keysInDatabase = rows[0]!.keys
  await client.end()
}, 600_000)

afterAll(async () => {
  await site?.release()
  if (scratch) await rm(scratch, {force: true, recursive: true})
})

/** The checks both the executable and the .deb's program pass, with no node on PATH. */
async function checkStandalone(program: string, label: string): Promise<void> {
  const home = await mkdtemp(join(scratch, `${label}-home-`))
  const env = {CI: 'true', HOME: home, PATH: noNodePath}
  expect((await run('/bin/sh', ['-c', 'command -v node || echo none'], env, home)).stdout.trim()).toBe('none')

  const version = await run(program, ['--version'], env, home)
  expect(version.code).toBe(0)
  expect(version.stdout).toContain(`ckan-migrate ${VERSION}`)
  expect(version.stdout).toContain(`CKAN versions: ${CKAN_MAJORS.join(', ')}`)
  expect(version.stdout).toMatch(/single executable: yes \(Node\.js v24\.\d+\.\d+ built in\)/)

  const help = await run(program, ['--help'], env, home)
  expect(help.code).toBe(0)
  for (const command of ['audit', 'backup', 'issue-tokens', 'purge-keys', 'sandbox', 'verify'])
    expect(help.stdout).toMatch(new RegExp(`^  ${command} `, 'm'))

  const audit = await run(program, ['audit', '--database-url', site.url, '--json'], env, home)
  expect(audit.code, audit.output).toBe(10)
  const envelope = JSON.parse(audit.stdout) as {result: AuditResult; status: number}
  expect(envelope.status).toBe(10)
  expect(envelope.result.verdict.status).toBe('NOT READY')
  expect(envelope.result.ckan.version).toBe('2.9')
  expect(keysInDatabase).toBeGreaterThan(0)
  expect(envelope.result.summary.legacyKeys.total).toBe(keysInDatabase)

  // Bad input still ends in the documented one-line error, with no stack trace from the bundle.
  const unreachable = await run(program, ['audit', '--database-url', 'postgresql://nobody@127.0.0.1:1/ckan'], env, home)
  expect(unreachable.code).toBe(8)
  expect(unreachable.output).toMatch(
    /Error: Cannot reach the CKAN database at postgresql:\/\/nobody@127\.0\.0\.1:1\/ckan: .+\n/,
  )
  expect(unreachable.output).not.toMatch(/\bat .+:\d+:\d+|main\.cjs|node_modules/)

  // The readiness page's charts are drawn on a thread of their own, from the artifact's own copy of
  // its code; that thread alone keeps a compile cache, private to the user.
  const page = join(home, 'readiness.html')
  const html = await run(program, ['audit', '--database-url', site.url, '--json', '--html', page], env, home)
  expect(html.code, html.output).toBe(10)
  expect(await readFile(page, 'utf8')).toMatch(/data-chart="credentials-people"[\s\S]*<svg/)
  expect((await stat(join(home, '.cache/ckan-migrate/compile-cache'))).mode & 0o777).toBe(0o700)

  const sandbox = await run(program, ['sandbox', '--run', '--users', '300', '--dir', join(home, 'sandbox')], env, home)
  expect(sandbox.code, sandbox.output).toBe(0)
  expect(sandbox.output).toContain('Every step did what the runbook promises, and no client lost access.')
  expect(sandbox.output).toMatch(/Continuity probe: .* 0 failures/)

  // `report --html` draws its charts itself: the drawing thread the launcher starts for --html must
  // not keep the process running once the command is done.
  const [runFolder] = await readdir(join(home, 'sandbox', 'runs'))
  const report = await run(
    program,
    ['report', join(home, 'sandbox', 'runs', runFolder!), '--html', join(home, 'run.html')],
    env,
    home,
  )
  expect(report.code, report.output).toBe(0)
  expect(await readFile(join(home, 'run.html'), 'utf8')).toContain('<svg')
}

describe(`the release (audit on ${REAL_POSTGRES_URL ? 'PostgreSQL' : 'PGlite'})`, () => {
  it('lists every artifact in SHA256SUMS with its true digest', async () => {
    const sums = await readFile(join(out, 'SHA256SUMS'), 'utf8')
    const names = [
      `ckan-migrate-${VERSION}-linux-x64`,
      `ckan-migrate_${VERSION}_amd64.deb`,
      `ckan-migrate-${VERSION}.tgz`,
    ]
    expect(manifest.artifacts.map((artifact) => artifact.file).sort()).toEqual([...names].sort())
    for (const name of names) expect(sums).toContain(`${await sha256(join(out, name))}  ${name}\n`)
    const {stdout} = await execFileAsync('sha256sum', ['-c', 'SHA256SUMS'], {cwd: out})
    expect(stdout.trim().split('\n')).toHaveLength(3)
  })

  it('single executable: runs --version, --help, audit and sandbox --run with no node on PATH', async () => {
    const sea = file('sea')
    expect((await stat(sea)).mode & 0o111).toBe(0o111)
    await checkStandalone(sea, 'sea')
  }, 600_000)

  it(".deb: names its dependencies, installs in oclif's layout, and its ckan-migrate passes the same checks", async () => {
    const deb = file('deb')
    const {stdout: fields} = await execFileAsync('dpkg-deb', [
      '-f',
      deb,
      'Package',
      'Version',
      'Architecture',
      'Depends',
      'Recommends',
    ])
    expect(fields).toContain('Package: ckan-migrate')
    expect(fields).toContain(`Version: ${VERSION}`)
    expect(fields).toContain('Architecture: amd64')
    expect(fields).toMatch(/^Depends: .*libc6 \(>= 2\.28\)/m)
    expect(fields).toMatch(/^Recommends: .*postgresql-client/m)
    const root = await mkdtemp(join(scratch, 'deb-root-'))
    await execFileAsync('dpkg', ['-x', deb, root])
    const link = join(root, 'usr/bin/ckan-migrate')
    expect(await readlink(link)).toBe('../lib/ckan-migrate/bin/ckan-migrate')
    const program = join(root, 'usr/lib/ckan-migrate/bin/ckan-migrate')
    expect((await stat(program)).mode & 0o777).toBe(0o755)
    await checkStandalone(link, 'deb')
  }, 600_000)

  it('npm tarball: installs with npm install -g and runs audit --help and sandbox --run on Node', async () => {
    const prefix = await mkdtemp(join(scratch, 'npm-prefix-'))
    const npmEnv = {
      ...process.env,
      npm_config_audit: 'false',
      npm_config_fund: 'false',
      npm_config_update_notifier: 'false',
    }
    await execFileAsync('npm', ['install', '-g', '--prefix', prefix, '--prefer-offline', file('npm')], {
      env: npmEnv,
      maxBuffer: 16 * 1024 * 1024,
    })
    const installed = join(prefix, 'lib/node_modules/ckan-migrate')
    for (const inside of ['oclif.manifest.json', 'dist/commands/audit.js', 'schema/ckan-2.9.sql'])
      await expect(stat(join(installed, inside))).resolves.toBeTruthy()
    const program = join(prefix, 'bin/ckan-migrate')
    const home = await mkdtemp(join(scratch, 'npm-home-'))
    // The node that runs this test (Node >= 22.12), and the system's tools; no other ckan-migrate.
    const env = {CI: 'true', HOME: home, PATH: `${dirname(process.execPath)}:/usr/bin:/bin`}

    const version = await run(program, ['--version'], env, home)
    expect(version.code, version.output).toBe(0)
    expect(version.stdout).toContain(`ckan-migrate ${VERSION}`)
    expect(version.stdout).toContain(`single executable: no (Node.js ${process.version} at `)

    const help = await run(program, ['audit', '--help'], env, home)
    expect(help.code).toBe(0)
    expect(help.stdout).toContain('$ ckan-migrate audit')
    expect(help.stdout).toContain('--database-url')

    const sandbox = await run(
      program,
      ['sandbox', '--run', '--users', '200', '--dir', join(home, 'sandbox')],
      env,
      home,
    )
    expect(sandbox.code, sandbox.output).toBe(0)
    expect(sandbox.output).toContain('Every step did what the runbook promises, and no client lost access.')
  }, 600_000)
})
