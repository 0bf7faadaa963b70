import {parse} from 'csv-parse/sync'
import {execFile} from 'node:child_process'
import {existsSync} from 'node:fs'
import {readdir, readFile, stat} from 'node:fs/promises'
import {dirname, join} from 'node:path'
import {promisify} from 'node:util'
import {describe, expect, it} from 'vitest'

import {runCli, runCliJson} from '../helpers/run-cli.js'
import {
  makeCertificate,
  makeRun,
  pythonRead,
  temporaryFolder,
  writeText,
  zipJsRead,
} from '../lib/bundle/bundle-fixtures.js'

type Row = {email: string; file: string; password: string; user: string}
type Result = {
  bundleDir: string
  bundles: Array<{file: string; outcome: string; userName: string}>
  counts: {kept: number; total: number; written: number}
  encryption: string
  passwordsFile: string
}

async function passwords(bundleDir: string): Promise<Row[]> {
  return parse(await readFile(join(bundleDir, 'passwords.csv')), {bom: true, columns: true}) as Row[]
}

function passwordOf(rows: Row[], user: string): string {
  const row = rows.find((candidate) => candidate.user === user)
  if (!row) throw new Error(`no passwords.csv row for ${user}`)
  return row.password
}

function expectNoSecrets(texts: string[], secrets: string[]) {
  for (const text of texts) for (const secret of secrets) expect(text).not.toContain(secret)
}

const USERS = [{name: 'alice'}, {name: 'bob'}, {name: 'carol'}]

describe('bundle: ZipCrypto for DCOR-Aid', () => {
  it("writes bundles Python's zipfile opens with the password from passwords.csv, and only with it", async () => {
    const fixture = await makeRun(USERS)
    const {cert, certPath} = await makeCertificate('dcor.example.org')
    const {exitCode, stderr, stdout} = await runCli([
      'bundle',
      '--out',
      fixture.path,
      '--server-cert',
      certPath,
      '--encryption',
      'zipcrypto',
    ])
    expect(exitCode).toBe(0)
    expect(stderr).toMatch(/ZipCrypto is weak/)
    const bundleDir = join(fixture.path, 'bundles')
    expect(stdout).toContain(bundleDir)
    const rows = await passwords(bundleDir)
    expect(rows.map((row) => row.user).sort()).toEqual(['alice', 'bob', 'carol'])
    for (const user of USERS) {
      const file = join(bundleDir, `${user.name}.dcor-access`)
      const opened = await pythonRead(file, passwordOf(rows, user.name))
      expect(opened).toEqual({apiKey: `${fixture.tokens.get(user.name)!.token}\n`, serverCert: cert})
      const wrong = await pythonRead(file, passwordOf(rows, user.name === 'alice' ? 'bob' : 'alice'))
      // ZipCrypto checks a wrong password against one header byte, so about 1 wrong password in 256
      // passes that check and fails on the CRC (or on inflating) instead; either way nothing is read.
      expect(wrong.apiKey).toBeUndefined()
      expect(wrong.error).toMatch(/Bad password|Bad CRC-32|decompress/)
      expect((await stat(file)).mode & 0o777).toBe(0o600)
    }
    expect((await stat(bundleDir)).mode & 0o777).toBe(0o700)
    expect((await stat(join(bundleDir, 'passwords.csv'))).mode & 0o777).toBe(0o600)
    expectNoSecrets(
      [stdout, stderr],
      [...rows.map((row) => row.password), ...[...fixture.tokens.values()].flatMap((t) => [t.token, t.jti])],
    )
  })
})

describe('bundle: AES-256 (default)', () => {
  it('writes WinZip AES bundles that zip.js (and 7z, when installed) opens; a wrong password fails; Python cannot open them', async () => {
    const fixture = await makeRun(USERS)
    const {cert, certPath} = await makeCertificate('dcor.example.org')
    const {exitCode, json, stderr, stdout} = await runCliJson<Result>([
      'bundle',
      '--out',
      fixture.path,
      '--server-cert',
      certPath,
    ])
    expect(exitCode).toBe(0)
    expect(json.status).toBe(0)
    expect(json.result).toMatchObject({counts: {kept: 0, total: 3, written: 3}, encryption: 'aes256'})
    expect(json.result!.passwordsFile).toBe(join(json.result!.bundleDir, 'passwords.csv'))
    expect(json.warnings.join('\n')).not.toMatch(/ZipCrypto/)
    const rows = await passwords(json.result!.bundleDir)
    const file = join(json.result!.bundleDir, 'alice.dcor-access')
    expect(await zipJsRead(file, passwordOf(rows, 'alice'))).toEqual({
      apiKey: `${fixture.tokens.get('alice')!.token}\n`,
      serverCert: cert,
    })
    await expect(zipJsRead(file, passwordOf(rows, 'bob'))).rejects.toThrow(/password|signature/i) // a 2-byte check: 1 wrong password in 65,536 fails on the HMAC
    expect((await pythonRead(file, passwordOf(rows, 'alice'))).error).toMatch(/NotImplementedError/)
    const sevenZip = ['7z', '7za', '7zz'].find((tool) => existsSync(`/usr/bin/${tool}`))
    if (sevenZip) {
      const {stdout: listed} = await promisify(execFile)(sevenZip, ['t', `-p${passwordOf(rows, 'alice')}`, file])
      expect(listed).toMatch(/Everything is Ok/)
    }
    expectNoSecrets(
      [stdout, stderr],
      [...rows.map((row) => row.password), ...[...fixture.tokens.values()].flatMap((t) => [t.token, t.jti])],
    )
  })
})

describe('bundle: reruns', () => {
  it('keeps up-to-date bundles and their passwords, writes only missing ones, and --force renews all', async () => {
    const fixture = await makeRun(USERS)
    const {certPath} = await makeCertificate('dcor.example.org')
    const base = ['bundle', '--out', fixture.path, '--server-cert', certPath]
    const first = await runCliJson<Result>([...base, '--users', 'alice,bob'])
    expect(first.json.result!.counts).toEqual({kept: 0, total: 2, written: 2})
    const bundleDir = first.json.result!.bundleDir
    const before = await passwords(bundleDir)
    const aliceBytes = await readFile(join(bundleDir, 'alice.dcor-access'))

    const second = await runCliJson<Result>(base)
    expect(second.json.result!.counts).toEqual({kept: 2, total: 3, written: 1})
    expect(second.json.result!.bundles).toEqual([
      {file: 'alice.dcor-access', outcome: 'kept', userName: 'alice'},
      {file: 'bob.dcor-access', outcome: 'kept', userName: 'bob'},
      {file: 'carol.dcor-access', outcome: 'written', userName: 'carol'},
    ])
    const after = await passwords(bundleDir)
    expect(passwordOf(after, 'alice')).toBe(passwordOf(before, 'alice'))
    expect(await readFile(join(bundleDir, 'alice.dcor-access'))).toEqual(aliceBytes)

    const forced = await runCliJson<Result>([...base, '--force', '--users', 'alice'])
    expect(forced.json.result!.counts).toEqual({kept: 0, total: 1, written: 1})
    const renewed = await passwords(bundleDir)
    expect(passwordOf(renewed, 'alice')).not.toBe(passwordOf(before, 'alice'))
    expect(passwordOf(renewed, 'bob')).toBe(passwordOf(before, 'bob'))
    expect(renewed).toHaveLength(3)
    expect((await zipJsRead(join(bundleDir, 'alice.dcor-access'), passwordOf(renewed, 'alice'))).apiKey).toBe(
      `${fixture.tokens.get('alice')!.token}\n`,
    )
  })

  it('rewrites a bundle whose certificate changed, and --dry-run writes nothing', async () => {
    const fixture = await makeRun(USERS)
    const {certPath} = await makeCertificate('dcor.example.org')
    const dry = await runCliJson<Result>(['bundle', '--out', fixture.path, '--server-cert', certPath, '--dry-run'])
    expect(dry.exitCode).toBe(0)
    expect(dry.json.result!.counts).toEqual({kept: 0, total: 3, written: 3})
    expect(existsSync(join(fixture.path, 'bundles'))).toBe(false)
    expect(await readdir(fixture.path)).not.toContain('journal.jsonl')

    await runCli(['bundle', '--out', fixture.path, '--server-cert', certPath])
    const renewedCert = await makeCertificate('dcor.example.org')
    const second = await runCliJson<Result>(['bundle', '--out', fixture.path, '--server-cert', renewedCert.certPath])
    expect(second.json.result!.counts).toEqual({kept: 0, total: 3, written: 3})
    const rows = await passwords(second.json.result!.bundleDir)
    expect(
      (await zipJsRead(join(second.json.result!.bundleDir, 'bob.dcor-access'), passwordOf(rows, 'bob'))).serverCert,
    ).toBe(renewedCert.cert)
  })
})

describe('bundle: --password-file', () => {
  it("uses the admin's passwords, and refuses a weak one without showing it", async () => {
    const fixture = await makeRun([{name: 'alice'}, {name: 'bob'}])
    const {certPath} = await makeCertificate('dcor.example.org')
    const folder = await temporaryFolder()
    const file = await writeText(
      join(folder, 'chosen.csv'),
      'user,password\nalice,"correct,horse battery"\nbob,Tr0ub4dor&3-staple\n',
    )
    const {exitCode} = await runCli([
      'bundle',
      '--out',
      fixture.path,
      '--server-cert',
      certPath,
      '--encryption',
      'zipcrypto',
      '--password-file',
      file,
    ])
    expect(exitCode).toBe(0)
    const opened = await pythonRead(join(fixture.path, 'bundles', 'alice.dcor-access'), 'correct,horse battery')
    expect(opened.apiKey).toBe(`${fixture.tokens.get('alice')!.token}\n`)
    expect(passwordOf(await passwords(join(fixture.path, 'bundles')), 'bob')).toBe('Tr0ub4dor&3-staple')

    const weak = await writeText(join(folder, 'weak.csv'), 'alice,hunter2\nbob,Tr0ub4dor&3-staple\n')
    const refused = await runCliJson([
      'bundle',
      '--out',
      fixture.path,
      '--server-cert',
      certPath,
      '--password-file',
      weak,
    ])
    expect(refused.exitCode).toBe(7)
    expect(refused.json.error!.message).toMatch(/weak\.csv line 1: the password is shorter than 12/)
    expect(refused.stdout).not.toContain('hunter2')
  })
})

describe('bundle: the server certificate (--fetch-cert, --server-cert)', () => {
  async function tlsServer(cn: string) {
    const {createServer} = await import('node:tls')
    const made = await makeCertificate(cn, 'DNS:localhost,IP:127.0.0.1')
    const server = createServer({cert: made.cert, key: made.key}, (socket) => socket.end())
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const {onTestFinished} = await import('vitest')
    onTestFinished(() => new Promise<void>((resolve) => server.close(() => resolve())))
    return {cert: made.cert, port: (server.address() as {port: number}).port}
  }

  it('takes the chain from the TLS handshake, and refuses it (exit 15) when its CN is not the host', async () => {
    const {cert, port} = await tlsServer('localhost')
    const fixture = await makeRun(USERS, `https://localhost:${port}`)
    const matching = await runCliJson<Result>(['bundle', '--out', fixture.path, '--fetch-cert', '--users', 'alice'])
    expect(matching.exitCode).toBe(0)
    expect(matching.json.warnings.join('\n')).not.toMatch(/CN/)
    expect(matching.json.warnings.join('\n')).toMatch(/No trusted CA vouches/)
    const rows = await passwords(matching.json.result!.bundleDir)
    expect(
      (await zipJsRead(join(matching.json.result!.bundleDir, 'alice.dcor-access'), passwordOf(rows, 'alice')))
        .serverCert,
    ).toBe(cert)

    const mismatch = await runCli([
      'bundle',
      '--out',
      fixture.path,
      '--fetch-cert',
      '--ckan-url',
      `https://127.0.0.1:${port}`,
      '--users',
      'bob',
    ])
    expect(mismatch.exitCode).toBe(15)
    expect(mismatch.error?.message).toMatch(
      /^The server certificate's CN is "localhost", not 127\.0\.0\.1 \(its SAN matches, but DCOR-Aid reads only the CN\): DCOR-Aid takes the server from the CN, so these bundles would send users to localhost$/,
    )
    expect((mismatch.error as {suggestions?: string[]}).suggestions?.join(' ')).toMatch(/--allow-cert-host-mismatch/)
    expect(passwordOf(await passwords(matching.json.result!.bundleDir), 'alice')).toBeTruthy()
    expect((await passwords(matching.json.result!.bundleDir)).map((row) => row.user)).toEqual(['alice'])
  })

  it('refuses a certificate for another host (exit 15, nothing written) unless --allow-cert-host-mismatch says it is meant', async () => {
    const fixture = await makeRun(USERS, 'https://data.example.org')
    const {certPath} = await makeCertificate('dcor.example.org')
    const args = ['bundle', '--out', fixture.path, '--server-cert', certPath]
    for (const extra of [[], ['--dry-run']]) {
      const refused = await runCliJson([...args, ...extra])
      expect(refused.exitCode).toBe(15)
      expect(refused.json.error!.message).toBe(
        `The server certificate's CN is "dcor.example.org", not data.example.org: DCOR-Aid takes the server from the CN, so these bundles would send users to dcor.example.org`,
      )
      expect(refused.json.error!.suggestion).toMatch(/--allow-cert-host-mismatch only if users really connect to/)
      expect(existsSync(join(fixture.path, 'bundles'))).toBe(false)
    }

    const allowed = await runCliJson<Result>([...args, '--allow-cert-host-mismatch'])
    expect(allowed.exitCode).toBe(0)
    expect(allowed.json.result!.counts).toEqual({kept: 0, total: 3, written: 3})
    expect(allowed.json.warnings.join('\n')).toMatch(
      /CN is "dcor\.example\.org", not data\.example\.org: with --allow-cert-host-mismatch, these bundles send users to dcor\.example\.org/,
    )
  })

  it('exits 7 with one line saying http:// has no certificate to fetch', async () => {
    const fixture = await makeRun(USERS, 'http://127.0.0.1:5000')
    const fromRun = await runCliJson(['bundle', '--out', fixture.path, '--fetch-cert'])
    expect(fromRun.exitCode).toBe(7)
    expect(fromRun.json.error!.message).toBe(
      "--fetch-cert: http://127.0.0.1:5000 (the run's site, from run.json) is plain http://, which has no TLS certificate to fetch",
    )
    expect(fromRun.json.error!.suggestion).toMatch(
      /--ckan-url with the site's https:\/\/ address, or --server-cert FILE/,
    )
    const given = await runCli([
      'bundle',
      '--out',
      fixture.path,
      '--fetch-cert',
      '--ckan-url',
      'http://ckan.example.org/',
    ])
    expect(given.exitCode).toBe(7)
    expect(given.error?.message).toBe(
      '--fetch-cert: http://ckan.example.org is plain http://, which has no TLS certificate to fetch',
    )
    expect(existsSync(join(fixture.path, 'bundles'))).toBe(false)
  })

  it('exits 3 with one line when the host cannot be reached', async () => {
    const fixture = await makeRun(USERS)
    const {error, exitCode, stderr} = await runCli([
      'bundle',
      '--out',
      fixture.path,
      '--fetch-cert',
      '--ckan-url',
      'https://127.0.0.1:9',
    ])
    expect(exitCode).toBe(3)
    expect(error?.message).toMatch(/^Cannot reach 127\.0\.0\.1:9 to fetch its certificate: ECONNREFUSED$/)
    expect(stderr).not.toMatch(/\n\s+at /)
  })
})

describe('bundle: bad input', () => {
  it.each([
    ['a run folder without people tokens', 'empty-run', 7, /holds no tokens for people to bundle/],
    ['a folder that is not a run folder', 'not-a-run', 7, /is not a ckan-migrate run folder/],
    ['a missing certificate file', 'missing-cert', 7, /Cannot read the server certificate .*: it does not exist/],
    ['a certificate file that is not PEM', 'not-pem', 7, /is not a PEM certificate/],
    ['a certificate file holding a private key', 'private-key', 7, /holds a private key/],
    ['an unwritable bundle folder', 'unwritable', 13, /Cannot write to the bundle folder/],
    [
      'an unknown --users name',
      'unknown-user',
      7,
      /1 user\(s\) given with --users have no token in this run: "mallory"/,
    ],
  ])('%s (%s): one-line error and its exit code', async (_label, kind, code, message) => {
    const fixture = kind === 'empty-run' ? await makeRun([]) : await makeRun(USERS)
    const {cert, certPath, key} = await makeCertificate('dcor.example.org')
    const folder = await temporaryFolder()
    const args = ['bundle', '--out', fixture.path, '--server-cert', certPath]
    if (kind === 'not-a-run') args[2] = folder
    if (kind === 'missing-cert') args[4] = join(folder, 'nope.pem')
    if (kind === 'not-pem') args[4] = await writeText(join(folder, 'cert.der'), 'MIIB...not a certificate')
    if (kind === 'private-key') args[4] = await writeText(join(folder, 'both.pem'), `${cert}${key}`)
    if (kind === 'unwritable')
      args.push('--bundle-dir', existsSync('/sys/kernel') ? '/sys/ckan-migrate-bundles' : join(folder, 'ro'))
    if (kind === 'unknown-user') args.push('--users', 'alice,mallory')
    const {exitCode, json, stderr} = await runCliJson(args)
    expect(exitCode).toBe(code)
    expect(json.status).toBe(code)
    expect(json.error!.message).toMatch(message)
    expect(json.error!.message).not.toContain('\n')
    expect(json.error!.suggestion).toBeTruthy()
    expect(stderr).not.toMatch(/\n\s+at /)
    if (kind === 'unwritable') expect(existsSync(join(fixture.path, 'bundles'))).toBe(false)
  })

  it('refuses a missing --server-cert/--fetch-cert as a usage error (exit 2)', async () => {
    const fixture = await makeRun(USERS)
    const {exitCode} = await runCli(['bundle', '--out', fixture.path])
    expect(exitCode).toBe(2)
  })
})

describe('bundle: file names', () => {
  it('keeps every bundle inside the bundle folder under a distinct portable name', async () => {
    const {HOSTILE_USERS} = await import('../../src/sandbox/ckan-site-seeder.js')
    const fixture = await makeRun([...HOSTILE_USERS.map((user) => ({name: user.name})), {name: 'CON'}, {name: 'alice'}])
    const {certPath} = await makeCertificate('dcor.example.org')
    const {json} = await runCliJson<Result>([
      'bundle',
      '--out',
      fixture.path,
      '--server-cert',
      certPath,
      '--encryption',
      'zipcrypto',
    ])
    expect(json.status).toBe(0)
    const bundleDir = json.result!.bundleDir
    const files = json.result!.bundles.map((bundle) => bundle.file)
    expect(new Set(files.map((file) => file.toLowerCase())).size).toBe(HOSTILE_USERS.length + 2)
    for (const file of files) {
      expect(file).toMatch(/^[a-z0-9][a-z0-9_.-]*\.dcor-access$/)
      expect(dirname(join(bundleDir, file))).toBe(bundleDir)
      expect(file.split('.')[0]).not.toMatch(/^(con|nul|prn|aux|com\d|lpt\d)$/)
    }
    expect((await readdir(bundleDir)).sort()).toEqual([...files, 'passwords.csv'].sort())
    const rows = await passwords(bundleDir)
    expect(rows.find((row) => row.user.includes('hyperlink'))!.user).toBe(`'=hyperlink("http://x")`)
    const traversal = json.result!.bundles.find((bundle) => bundle.userName === '../../etc/passwd')!
    const opened = await pythonRead(join(bundleDir, traversal.file), passwordOf(rows, '../../etc/passwd'))
    expect(opened.apiKey).toBe(`${fixture.tokens.get('../../etc/passwd')!.token}\n`)
  })
})
