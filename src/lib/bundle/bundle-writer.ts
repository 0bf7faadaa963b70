import {configure, TextWriter, Uint8ArrayReader, ZipReader} from '@zip.js/zip.js'
import {readFile} from 'node:fs/promises'

import {
  type EncryptedZipEntry,
  encryptedZip,
  readEncryptedZip,
  type ZipEncryption,
  ZipReadError,
} from './encrypted-zip.js'
import {Secret} from '../secret.js'

/** The two members DCOR-Aid and dclab read (`zipfile.ZipFile(path).read(name, pwd=…)`), at the archive root. */
export const API_KEY_MEMBER = 'api_key.txt'
export const SERVER_CERT_MEMBER = 'server.cert'

export type AccessBundleEncryption = ZipEncryption

export type AccessBundleParts = {
  encryption: AccessBundleEncryption
  password: Secret
  serverCertPem: string
  token: Secret
}

/**
 * The bytes of one `.dcor-access` bundle: an encrypted ZIP holding `api_key.txt` (the token and a
 * newline) and `server.cert` (PEM), both encrypted (so nobody can swap the pinned certificate
 * without the password). StagedBundles puts them on disk (0600, 0700 folder, durably).
 */
export async function encodeAccessBundle(options: AccessBundleParts): Promise<Uint8Array> {
  return encryptedZip(
    [
      {data: Buffer.from(`${options.token.reveal()}\n`, 'utf8'), name: API_KEY_MEMBER},
      {data: Buffer.from(options.serverCertPem, 'utf8'), name: SERVER_CERT_MEMBER},
    ],
    options.password,
    options.encryption,
  )
}

export type AccessBundleContents = {
  encryption: AccessBundleEncryption
  serverCertPem: string
  token: Secret
}

/** Why an existing bundle could not be read: it is missing, not a bundle, or the password is wrong. */
export class BundleReadError extends Error {
  override name = 'BundleReadError'
  readonly reason: 'missing' | 'not-a-bundle' | 'wrong-password'

  constructor(reason: BundleReadError['reason'], cause?: unknown) {
    super(`cannot read bundle: ${reason}`, {cause})
    this.reason = reason
  }
}

let zipConfigured = false

/**
 * Opens a bundle with its password (through zip.js, an independent implementation of both
 * encryptions), as DCOR-Aid would: the token is `api_key.txt` stripped of white space.
 */
export async function readAccessBundle(path: string, password: Secret): Promise<AccessBundleContents> {
  return openAccessBundle(path, password, async (bundle) => {
    const token = await bundle.read(API_KEY_MEMBER)
    const serverCertPem = await bundle.read(SERVER_CERT_MEMBER)
    return {encryption: bundle.encryption, serverCertPem, token: new Secret(token.trim())}
  })
}

/**
 * True when the bundle at `path` opens with `password` (as readAccessBundle reads it) and holds
 * exactly these contents; false when it is missing, not a bundle, or under another password. The
 * certificate is decrypted only once the token matched: a bundle of an earlier token (rotate, a
 * rerun after issue-tokens) costs one key derivation, not two.
 */
export async function accessBundleHolds(
  path: string,
  password: Secret,
  wanted: AccessBundleContents,
): Promise<boolean> {
  let bytes: Uint8Array
  try {
    bytes = await readFile(path)
  } catch {
    return false
  }
  const entries = readEncryptedZip(bytes, password)
  if (entries) {
    // The layout encodeAccessBundle writes: read without zip.js (see readEncryptedZip).
    const member = (name: string) => entries.find((entry) => entry.name === name)
    const apiKey = member(API_KEY_MEMBER)
    const serverCert = member(SERVER_CERT_MEMBER)
    if (!apiKey || !serverCert || apiKey.encryption !== wanted.encryption) return false
    try {
      const text = async (entry: EncryptedZipEntry) => new TextDecoder().decode(await entry.read())
      if ((await text(apiKey)).trim() !== wanted.token.reveal()) return false
      return (await text(serverCert)) === wanted.serverCertPem
    } catch (error) {
      if (error instanceof ZipReadError) return false
      throw error
    }
  }
  try {
    return await openAccessBundle(path, password, async (bundle) => {
      if (bundle.encryption !== wanted.encryption) return false
      if ((await bundle.read(API_KEY_MEMBER)).trim() !== wanted.token.reveal()) return false
      return (await bundle.read(SERVER_CERT_MEMBER)) === wanted.serverCertPem
    })
  } catch (error) {
    if (error instanceof BundleReadError) return false
    throw error
  }
}

type OpenedBundle = {encryption: AccessBundleEncryption; read: (member: string) => Promise<string>}

async function openAccessBundle<T>(
  path: string,
  password: Secret,
  use: (bundle: OpenedBundle) => Promise<T>,
): Promise<T> {
  if (!zipConfigured) {
    configure({useWebWorkers: false})
    zipConfigured = true
  }
  let bytes: Uint8Array
  try {
    bytes = await readFile(path)
  } catch (error) {
    throw new BundleReadError('missing', error)
  }
  const reader = new ZipReader(new Uint8ArrayReader(bytes))
  try {
    let entries
    try {
      entries = await reader.getEntries()
    } catch (error) {
      throw new BundleReadError('not-a-bundle', error)
    }
    const member = (name: string) => entries.find((entry) => entry.filename === name)
    const apiKey = member(API_KEY_MEMBER)
    const serverCert = member(SERVER_CERT_MEMBER)
    if (!apiKey || !serverCert || apiKey.directory || serverCert.directory) throw new BundleReadError('not-a-bundle')
    // UTF-8 bytes, as Python's zipfile (and so DCOR-Aid) encodes a str password.
    const rawPassword = Buffer.from(password.reveal(), 'utf8')
    const read = async (name: string) => {
      try {
        return await (name === API_KEY_MEMBER ? apiKey : serverCert).getData(new TextWriter(), {
          checkSignature: true,
          rawPassword,
        })
      } catch (error) {
        throw new BundleReadError(
          /password|authentication/i.test((error as Error).message) ? 'wrong-password' : 'not-a-bundle',
          error,
        )
      }
    }
    return await use({encryption: apiKey.zipCrypto ? 'zipcrypto' : 'aes256', read})
  } finally {
    await reader.close()
  }
}
