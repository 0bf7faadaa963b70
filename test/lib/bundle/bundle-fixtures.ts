import {configure, TextWriter, Uint8ArrayReader, ZipReader} from '@zip.js/zip.js'
import {execFile} from 'node:child_process'
import {randomBytes, randomUUID} from 'node:crypto'
import {mkdtemp, readFile, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {promisify} from 'node:util'
import {onTestFinished} from 'vitest'

import {openRunFolder, type RunFolder} from '../../../src/lib/run/run-folder.js'
import {Secret} from '../../../src/lib/secret.js'

export const run = promisify(execFile)

/** A temporary folder removed when the test finishes. */
export async function temporaryFolder(): Promise<string> {
  const folder = await mkdtemp(join(tmpdir(), 'ckan-migrate-bundle-'))
  onTestFinished(() => rm(folder, {force: true, recursive: true}))
  return folder
}

const base64url = (value: string | Buffer) => Buffer.from(value).toString('base64url')

/** A JWT-shaped token like CKAN's (`{"typ":"JWT","alg":"HS256"}`), with a random jti. */
export function fakeToken(): {jti: string; token: string} {
  const jti = randomBytes(24).toString('base64url')
  const header = base64url('{"typ":"JWT","alg":"HS256"}')
  const payload = base64url(JSON.stringify({iat: 1_790_000_000, jti}))
  return {jti, token: `${header}.${payload}.${randomBytes(32).toString('base64url')}`}
}

export type FixtureUser = {email?: string; id?: string; name: string}
export type FixtureRun = {folder: RunFolder; path: string; tokens: Map<string, {jti: string; token: string}>}

/** A run folder with one issue-tokens token per user (and a service token that must never be bundled). */
export async function makeRun(
  users: readonly FixtureUser[],
  ckanUrl = 'https://dcor.example.org',
): Promise<FixtureRun> {
  const path = join(await temporaryFolder(), 'run')
  const folder = await openRunFolder(path, {create: true, site: {ckanUrl}})
  const tokens = new Map<string, {jti: string; token: string}>()
  for (const user of users) {
    const made = fakeToken()
    tokens.set(user.name, made)
    await folder.storeToken({
      createdAt: new Date().toISOString(),
      jti: new Secret(made.jti),
      source: 'issue-tokens',
      token: new Secret(made.token),
      tokenName: 'ckan-migrate test',
      userId: user.id ?? randomUUID(),
      userName: user.name,
    })
  }
  const service = fakeToken()
  await folder.storeToken({
    createdAt: new Date().toISOString(),
    jti: new Secret(service.jti),
    service: 'xloader',
    source: 'rewrite-config',
    token: new Secret(service.token),
    tokenName: 'xloader',
    userId: randomUUID(),
    userName: 'default',
  })
  return {folder, path, tokens}
}

/** A self-signed certificate (and its key) for `cn`, made with openssl. */
export async function makeCertificate(
  cn: string,
  san = `DNS:${cn}`,
): Promise<{cert: string; certPath: string; key: string; keyPath: string}> {
  const folder = await temporaryFolder()
  const certPath = join(folder, `${cn}.cert`)
  const keyPath = join(folder, `${cn}.key`)
  await run('openssl', [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-keyout',
    keyPath,
    '-out',
    certPath,
    '-days',
    '2',
    '-subj',
    `/CN=${cn}`,
    '-addext',
    `subjectAltName=${san}`,
  ])
  return {cert: await readFile(certPath, 'utf8'), certPath, key: await readFile(keyPath, 'utf8'), keyPath}
}

/** Reads members of a ZIP with CPython's zipfile, the way dclab's access_token.py does. */
export async function pythonRead(
  path: string,
  password: string,
): Promise<{apiKey?: string; error?: string; serverCert?: string}> {
  const script = `
import json, sys, zipfile
args = json.loads(sys.stdin.read())
try:
    with zipfile.ZipFile(args["path"]) as arc:
        pwd = args["password"].encode("utf-8")
        print(json.dumps({"apiKey": arc.read("api_key.txt", pwd=pwd).decode(), "serverCert": arc.read("server.cert", pwd=pwd).decode()}))
except Exception as error:
    print(json.dumps({"error": type(error).__name__ + ": " + str(error)}))
`
  const child = execFile('python3', ['-c', script])
  const output = new Promise<string>((resolve, reject) => {
    let text = ''
    child.stdout!.on('data', (chunk) => (text += chunk))
    child.on('error', reject)
    child.on('close', () => resolve(text))
  })
  child.stdin!.end(JSON.stringify({password, path}))
  return JSON.parse(await output)
}

export async function writeText(path: string, text: string): Promise<string> {
  await writeFile(path, text, {mode: 0o600})
  return path
}

/** Opens a bundle with zip.js (independent of the bundle writer), checking each member's signature. */
export async function zipJsRead(path: string, password: string): Promise<{apiKey: string; serverCert: string}> {
  configure({useWebWorkers: false})
  const reader = new ZipReader(new Uint8ArrayReader(await readFile(path)), {password})
  try {
    const entries = await reader.getEntries()
    const read = (name: string) => {
      const entry = entries.find((candidate) => candidate.filename === name)
      if (!entry || entry.directory) throw new Error(`no ${name} in ${path}`)
      return entry.getData(new TextWriter(), {checkSignature: true})
    }
    return {apiKey: await read('api_key.txt'), serverCert: await read('server.cert')}
  } finally {
    await reader.close()
  }
}
