import {configure, TextWriter, Uint8ArrayReader, ZipReader} from '@zip.js/zip.js'
import {readFile} from 'node:fs/promises'

import {encryptedZip, type ZipEncryption} from './encrypted-zip.js'
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
    const read = async (entry: typeof apiKey) => {
      try {
        return await entry.getData(new TextWriter(), {checkSignature: true, rawPassword})
      } catch (error) {
        throw new BundleReadError(
          /password|authentication/i.test((error as Error).message) ? 'wrong-password' : 'not-a-bundle',
          error,
        )
      }
    }
    const token = await read(apiKey)
    const serverCertPem = await read(serverCert)
    return {encryption: apiKey.zipCrypto ? 'zipcrypto' : 'aes256', serverCertPem, token: new Secret(token.trim())}
  } finally {
    await reader.close()
  }
}
