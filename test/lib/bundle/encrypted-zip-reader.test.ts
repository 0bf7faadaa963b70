import {configure, TextReader, Uint8ArrayWriter, ZipWriter} from '@zip.js/zip.js'
import {writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'

import {accessBundleHolds, encodeAccessBundle} from '../../../src/lib/bundle/bundle-writer.js'
import {encryptedZip, readEncryptedZip, type ZipEncryption} from '../../../src/lib/bundle/encrypted-zip.js'
import {Secret} from '../../../src/lib/secret.js'
import {fakeToken, temporaryFolder} from './bundle-fixtures.js'

const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n'
const password = new Secret('Kp7w-abcd-EFGH-2345-mnop-qrst')

describe('readEncryptedZip', () => {
  for (const encryption of ['aes256', 'zipcrypto'] as const) {
    it(`reads back what encryptedZip writes (${encryption}), and refuses a wrong password and altered bytes`, async () => {
      const data = Buffer.from('Zoë, "token"\n', 'utf8')
      const archive = await encryptedZip(
        [
          {data, name: 'api_key.txt'},
          {data: Buffer.from(PEM), name: 'server.cert'},
        ],
        password,
        encryption,
      )
      const entries = readEncryptedZip(archive, password)!
      expect(entries.map((entry) => [entry.name, entry.encryption])).toEqual([
        ['api_key.txt', encryption],
        ['server.cert', encryption],
      ])
      expect(Buffer.from(await entries[0]!.read()).toString('utf8')).toBe('Zoë, "token"\n')
      expect(Buffer.from(await entries[1]!.read()).toString('utf8')).toBe(PEM)

      await expect(readEncryptedZip(archive, new Secret('Kp7w-abcd-EFGH-2345-mnop-qrsT'))![0]!.read()).rejects.toThrow(
        /wrong-password|damaged/,
      )
      // One byte of the first entry's ciphertext flipped: the MAC (AES) or the CRC (ZipCrypto) notices.
      const altered = Buffer.from(archive)
      const start = 30 + 'api_key.txt'.length + (encryption === 'aes256' ? 11 + 18 : 12)
      altered[start + 3]! ^= 0x01
      await expect(readEncryptedZip(altered, password)![0]!.read()).rejects.toThrow(/damaged/)
    })
  }

  it('leaves layouts it does not write to zip.js: compressed entries, and bytes that are no archive', async () => {
    configure({useWebWorkers: false})
    const writer = new ZipWriter(new Uint8ArrayWriter(), {encryptionStrength: 3, level: 6, password: password.reveal()})
    await writer.add('api_key.txt', new TextReader('a token, compressed '.repeat(20)))
    const compressed = await writer.close()
    expect(readEncryptedZip(compressed, password)).toBeUndefined()
    expect(readEncryptedZip(Buffer.from('not a zip at all'), password)).toBeUndefined()
    expect(readEncryptedZip(new Uint8Array(0), password)).toBeUndefined()
  })
})

describe('accessBundleHolds', () => {
  it('is true only for the same token, certificate, encryption and password', async () => {
    const folder = await temporaryFolder()
    const {token} = fakeToken()
    for (const encryption of ['aes256', 'zipcrypto'] as ZipEncryption[]) {
      const path = join(folder, `bundle-${encryption}.dcor-access`)
      await writeFile(
        path,
        await encodeAccessBundle({encryption, password, serverCertPem: PEM, token: new Secret(token)}),
      )
      const wanted = {encryption, serverCertPem: PEM, token: new Secret(token)}
      expect(await accessBundleHolds(path, password, wanted)).toBe(true)
      expect(await accessBundleHolds(path, new Secret('another-password-1234'), wanted)).toBe(false)
      expect(await accessBundleHolds(path, password, {...wanted, token: new Secret(fakeToken().token)})).toBe(false)
      expect(await accessBundleHolds(path, password, {...wanted, serverCertPem: `${PEM}\n`})).toBe(false)
      expect(
        await accessBundleHolds(path, password, {
          ...wanted,
          encryption: encryption === 'aes256' ? 'zipcrypto' : 'aes256',
        }),
      ).toBe(false)
    }
    expect(
      await accessBundleHolds(join(folder, 'missing.dcor-access'), password, {
        encryption: 'aes256',
        serverCertPem: PEM,
        token: new Secret(token),
      }),
    ).toBe(false)
    // A bundle zip.js wrote (compressed): read through zip.js, with the same answer.
    configure({useWebWorkers: false})
    const writer = new ZipWriter(new Uint8ArrayWriter(), {encryptionStrength: 3, level: 6, password: password.reveal()})
    await writer.add('api_key.txt', new TextReader(`${token}\n`))
    await writer.add('server.cert', new TextReader(PEM))
    const other = join(folder, 'zipjs.dcor-access')
    await writeFile(other, await writer.close())
    expect(
      await accessBundleHolds(other, password, {encryption: 'aes256', serverCertPem: PEM, token: new Secret(token)}),
    ).toBe(true)
  })
})
