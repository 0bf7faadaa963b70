import {createCipheriv, createHmac, pbkdf2, randomBytes, timingSafeEqual} from 'node:crypto'
import {promisify} from 'node:util'

import type {Secret} from '../secret.js'

/**
 * A minimal writer for small password-protected ZIP archives, in the two encryptions readers
 * support: WinZip AES-256 (AE-2; 7-Zip, WinZip, macOS Archive Utility with 7-Zip, zip.js) and
 * traditional PKWARE "ZipCrypto" (the only one Python's zipfile, and so DCOR-Aid, can open).
 *
 * Why our own writer and not zip.js: a bundle is two tiny entries, and zip.js spends about 0.7 ms of
 * main-thread time per archive in its stream machinery on top of the key derivation, which made
 * 10,000 AES bundles take about 19 s on the 2-core build machine (issue 7 asks for 10 s). The
 * format work here is a few hundred bytes of headers; the cost that remains is WinZip AES's
 * PBKDF2 (1,000 rounds of HMAC-SHA1 per entry, by design), which runs on libuv's thread pool.
 * zip.js still reads what we write in the tests, and every other layout (readEncryptedZip reads
 * only ours, for a rerun's check of an existing bundle).
 *
 * Entries are stored (not compressed): the contents are a token and a certificate, both short.
 */
export type ZipEncryption = 'aes256' | 'zipcrypto'

export type ZipEntryInput = {
  data: Uint8Array
  /** ASCII name at the archive root. */
  name: string
}

const pbkdf2Async = promisify(pbkdf2)

const AES_KEY_LENGTH = 32
const AES_SALT_LENGTH = 16
const AES_MAC_LENGTH = 10
const AES_ITERATIONS = 1000
const METHOD_STORED = 0
const METHOD_AES = 99
const FLAG_ENCRYPTED = 0x0001
const VERSION_ZIPCRYPTO = 20
const VERSION_AES = 51
/** "Made by" Unix (3), so external attributes carry Unix modes: entries extract as 0600. */
const MADE_BY_UNIX = 3 << 8
const UNIX_FILE_0600 = (0o100_600 << 16) >>> 0

const CRC_TABLE = (() => {
  const table = new Uint32Array(256)
  for (let n = 0; n < 256; n += 1) {
    let c = n
    for (let k = 0; k < 8; k += 1) c = c & 1 ? 0xed_b8_83_20 ^ (c >>> 1) : c >>> 1
    table[n] = c >>> 0
  }
  return table
})()

function crcByte(crc: number, byte: number): number {
  return (CRC_TABLE[(crc ^ byte) & 0xff]! ^ (crc >>> 8)) >>> 0
}

/** CRC-32 (the ZIP/PNG one) of some bytes. */
export function crc32(data: Uint8Array): number {
  let crc = 0xff_ff_ff_ff
  for (const byte of data) crc = crcByte(crc, byte)
  return (crc ^ 0xff_ff_ff_ff) >>> 0
}

type EncodedEntry = {
  crc: number
  extra: Uint8Array
  method: number
  name: Uint8Array
  payload: Uint8Array
  size: number
  version: number
}

/** Builds a whole archive in memory; the result is a few hundred bytes for a bundle. */
export async function encryptedZip(
  entries: readonly ZipEntryInput[],
  password: Secret,
  encryption: ZipEncryption,
  now: Date = new Date(),
): Promise<Uint8Array> {
  const passwordBytes = Buffer.from(password.reveal(), 'utf8')
  const encoded = await Promise.all(
    entries.map((entry) =>
      encryption === 'aes256'
        ? encodeAes(entry, passwordBytes)
        : Promise.resolve(encodeZipCrypto(entry, passwordBytes)),
    ),
  )
  return assemble(encoded, dosDateTime(now))
}

async function encodeAes(entry: ZipEntryInput, password: Uint8Array): Promise<EncodedEntry> {
  const salt = randomBytes(AES_SALT_LENGTH)
  const derived = await pbkdf2Async(password, salt, AES_ITERATIONS, 2 * AES_KEY_LENGTH + 2, 'sha1')
  const encryptionKey = derived.subarray(0, AES_KEY_LENGTH)
  const macKey = derived.subarray(AES_KEY_LENGTH, 2 * AES_KEY_LENGTH)
  const verifier = derived.subarray(2 * AES_KEY_LENGTH)
  const ciphertext = aesCtrLittleEndian(encryptionKey, entry.data)
  const mac = createHmac('sha1', macKey).update(ciphertext).digest().subarray(0, AES_MAC_LENGTH)
  // AES extra field 0x9901: vendor version 2 (AE-2: no CRC), vendor "AE", strength 3 (256 bits), real method.
  const extra = Buffer.alloc(11)
  extra.writeUInt16LE(0x99_01, 0)
  extra.writeUInt16LE(7, 2)
  extra.writeUInt16LE(2, 4)
  extra.write('AE', 6, 'ascii')
  extra.writeUInt8(3, 8)
  extra.writeUInt16LE(METHOD_STORED, 9)
  return {
    crc: 0,
    extra,
    method: METHOD_AES,
    name: Buffer.from(entry.name, 'ascii'),
    payload: Buffer.concat([salt, verifier, ciphertext, mac]),
    size: entry.data.length,
    version: VERSION_AES,
  }
}

/** WinZip AES counter mode: a 128-bit little-endian block counter starting at 1. */
function aesCtrLittleEndian(key: Uint8Array, data: Uint8Array): Buffer {
  const blocks = Math.ceil(data.length / 16)
  const counters = Buffer.alloc(blocks * 16)
  for (let index = 0; index < blocks; index += 1) counters.writeUInt32LE(index + 1, index * 16)
  const cipher = createCipheriv('aes-256-ecb', key, null)
  cipher.setAutoPadding(false)
  const keystream = Buffer.concat([cipher.update(counters), cipher.final()])
  const out = Buffer.alloc(data.length)
  for (let index = 0; index < data.length; index += 1) out[index] = data[index]! ^ keystream[index]!
  return out
}

/** Traditional PKWARE encryption's three keys, initialised with the password. */
function zipCryptoKeys(password: Uint8Array): {keyByte: () => number; update: (byte: number) => void} {
  const keys = [0x12_34_56_78, 0x23_45_67_89, 0x34_56_78_90]
  const update = (byte: number) => {
    keys[0] = crcByte(keys[0]!, byte)
    keys[1] = (Math.imul((keys[1]! + (keys[0] & 0xff)) >>> 0, 134_775_813) + 1) >>> 0
    keys[2] = crcByte(keys[2]!, keys[1] >>> 24)
  }
  for (const byte of password) update(byte)
  const keyByte = () => {
    const temporary = (keys[2]! | 2) & 0xff_ff
    return ((temporary * (temporary ^ 1)) >>> 8) & 0xff
  }
  return {keyByte, update}
}

function encodeZipCrypto(entry: ZipEntryInput, password: Uint8Array): EncodedEntry {
  const crc = crc32(entry.data)
  const cipher = zipCryptoKeys(password)
  // 12-byte header: 11 random bytes, then the CRC's high byte, which readers check the password against.
  const header = randomBytes(12)
  header[11] = crc >>> 24
  const plain = Buffer.concat([header, entry.data])
  const out = Buffer.alloc(plain.length)
  for (let index = 0; index < plain.length; index += 1) {
    out[index] = plain[index]! ^ cipher.keyByte()
    cipher.update(plain[index]!)
  }
  return {
    crc,
    extra: new Uint8Array(0),
    method: METHOD_STORED,
    name: Buffer.from(entry.name, 'ascii'),
    payload: out,
    size: entry.data.length,
    version: VERSION_ZIPCRYPTO,
  }
}

function assemble(entries: readonly EncodedEntry[], stamp: {date: number; time: number}): Uint8Array {
  const parts: Buffer[] = []
  const central: Buffer[] = []
  let offset = 0
  for (const entry of entries) {
    const local = Buffer.alloc(30)
    local.writeUInt32LE(0x04_03_4b_50, 0)
    local.writeUInt16LE(entry.version, 4)
    local.writeUInt16LE(FLAG_ENCRYPTED, 6)
    local.writeUInt16LE(entry.method, 8)
    local.writeUInt16LE(stamp.time, 10)
    local.writeUInt16LE(stamp.date, 12)
    local.writeUInt32LE(entry.crc, 14)
    local.writeUInt32LE(entry.payload.length, 18)
    local.writeUInt32LE(entry.size, 22)
    local.writeUInt16LE(entry.name.length, 26)
    local.writeUInt16LE(entry.extra.length, 28)
    parts.push(local, Buffer.from(entry.name), Buffer.from(entry.extra), Buffer.from(entry.payload))

    const record = Buffer.alloc(46)
    record.writeUInt32LE(0x02_01_4b_50, 0)
    record.writeUInt16LE(MADE_BY_UNIX | entry.version, 4)
    record.writeUInt16LE(entry.version, 6)
    record.writeUInt16LE(FLAG_ENCRYPTED, 8)
    record.writeUInt16LE(entry.method, 10)
    record.writeUInt16LE(stamp.time, 12)
    record.writeUInt16LE(stamp.date, 14)
    record.writeUInt32LE(entry.crc, 16)
    record.writeUInt32LE(entry.payload.length, 20)
    record.writeUInt32LE(entry.size, 24)
    record.writeUInt16LE(entry.name.length, 28)
    record.writeUInt16LE(entry.extra.length, 30)
    // comment length, disk number, internal attributes: 0
    record.writeUInt32LE(UNIX_FILE_0600, 38)
    record.writeUInt32LE(offset, 42)
    central.push(record, Buffer.from(entry.name), Buffer.from(entry.extra))
    offset += 30 + entry.name.length + entry.extra.length + entry.payload.length
  }
  const directory = Buffer.concat(central)
  const end = Buffer.alloc(22)
  end.writeUInt32LE(0x06_05_4b_50, 0)
  end.writeUInt16LE(entries.length, 8)
  end.writeUInt16LE(entries.length, 10)
  end.writeUInt32LE(directory.length, 12)
  end.writeUInt32LE(offset, 16)
  return Buffer.concat([...parts, directory, end])
}

/** Why readEncryptedZip could not give an entry: the password is wrong, or the bytes are not what they claim. */
export class ZipReadError extends Error {
  override name = 'ZipReadError'
  readonly reason: 'damaged' | 'wrong-password'

  constructor(reason: ZipReadError['reason']) {
    super(`cannot read the archive: ${reason}`)
    this.reason = reason
  }
}

export type EncryptedZipEntry = {encryption: ZipEncryption; name: string; read: () => Promise<Uint8Array>}

/**
 * The entries of an archive in the layout encryptedZip writes (stored entries, WinZip AES-256 AE-2
 * or ZipCrypto), each decrypted and checked (AES: the password verifier and the HMAC; ZipCrypto:
 * the check byte and the CRC) only when read; undefined for any other layout (compressed entries,
 * other AES strengths, AE-1, ZIP64, a split archive), which a general reader (zip.js) must open.
 * It spares a rerun's check of an existing bundle zip.js's stream machinery; zip.js still reads
 * every layout, and in the tests what encryptedZip writes.
 */
export function readEncryptedZip(bytes: Uint8Array, password: Secret): EncryptedZipEntry[] | undefined {
  try {
    return zipEntries(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), password)
  } catch (error) {
    // A length that points outside the archive: not one of ours.
    if (error instanceof RangeError) return undefined
    throw error
  }
}

function zipEntries(data: Buffer, password: Secret): EncryptedZipEntry[] | undefined {
  // The end-of-central-directory record: 22 bytes, then a comment of at most 65,535.
  let end = -1
  for (let at = data.length - 22; at >= Math.max(0, data.length - 22 - 0xff_ff); at -= 1) {
    if (data.readUInt32LE(at) === 0x06_05_4b_50 && at + 22 + data.readUInt16LE(at + 20) === data.length) {
      end = at
      break
    }
  }
  if (end === -1) return undefined
  const count = data.readUInt16LE(end + 10)
  const directoryOffset = data.readUInt32LE(end + 16)
  if (data.readUInt16LE(end + 4) !== 0 || data.readUInt16LE(end + 8) !== count || directoryOffset === 0xff_ff_ff_ff)
    return undefined
  const passwordBytes = Buffer.from(password.reveal(), 'utf8')
  const entries: EncryptedZipEntry[] = []
  let at = directoryOffset
  for (let index = 0; index < count; index += 1) {
    if (at + 46 > end || data.readUInt32LE(at) !== 0x02_01_4b_50) return undefined
    const flags = data.readUInt16LE(at + 8)
    const method = data.readUInt16LE(at + 10)
    const crc = data.readUInt32LE(at + 16)
    const compressedSize = data.readUInt32LE(at + 20)
    const size = data.readUInt32LE(at + 24)
    const nameLength = data.readUInt16LE(at + 28)
    const extraLength = data.readUInt16LE(at + 30)
    const commentLength = data.readUInt16LE(at + 32)
    const localOffset = data.readUInt32LE(at + 42)
    const name = data.toString('latin1', at + 46, at + 46 + nameLength)
    const extra = data.subarray(at + 46 + nameLength, at + 46 + nameLength + extraLength)
    at += 46 + nameLength + extraLength + commentLength
    // Encrypted; no data descriptor (bit 3), no strong encryption (bit 6).
    if ((flags & FLAG_ENCRYPTED) === 0 || (flags & 0x00_48) !== 0) return undefined
    if (localOffset + 30 > directoryOffset || data.readUInt32LE(localOffset) !== 0x04_03_4b_50) return undefined
    const start = localOffset + 30 + data.readUInt16LE(localOffset + 26) + data.readUInt16LE(localOffset + 28)
    if (start + compressedSize > directoryOffset) return undefined
    const payload = data.subarray(start, start + compressedSize)
    if (method === METHOD_AES) {
      const aes = aesExtra(extra)
      if (!aes || payload.length < AES_SALT_LENGTH + 2 + AES_MAC_LENGTH) return undefined
      entries.push({encryption: 'aes256', name, read: () => decodeAes(payload, passwordBytes, size)})
    } else if (method === METHOD_STORED) {
      if (compressedSize !== size + 12) return undefined
      entries.push({encryption: 'zipcrypto', name, read: async () => decodeZipCrypto(payload, passwordBytes, crc)})
    } else {
      return undefined
    }
  }
  return entries
}

/** The AES extra field (0x9901) of an entry we can read: AE-2, 256 bits, stored. */
function aesExtra(extra: Uint8Array): boolean {
  const field = Buffer.from(extra.buffer, extra.byteOffset, extra.byteLength)
  for (let at = 0; at + 4 <= field.length;) {
    const id = field.readUInt16LE(at)
    const length = field.readUInt16LE(at + 2)
    if (id === 0x99_01) {
      return (
        length === 7 &&
        at + 11 <= field.length &&
        field.readUInt16LE(at + 4) === 2 &&
        field.toString('latin1', at + 6, at + 8) === 'AE' &&
        field.readUInt8(at + 8) === 3 &&
        field.readUInt16LE(at + 9) === METHOD_STORED
      )
    }
    at += 4 + length
  }
  return false
}

async function decodeAes(payload: Uint8Array, password: Uint8Array, size: number): Promise<Uint8Array> {
  const salt = payload.subarray(0, AES_SALT_LENGTH)
  const verifier = payload.subarray(AES_SALT_LENGTH, AES_SALT_LENGTH + 2)
  const ciphertext = payload.subarray(AES_SALT_LENGTH + 2, payload.length - AES_MAC_LENGTH)
  const mac = payload.subarray(payload.length - AES_MAC_LENGTH)
  if (ciphertext.length !== size) throw new ZipReadError('damaged')
  const derived = await pbkdf2Async(password, salt, AES_ITERATIONS, 2 * AES_KEY_LENGTH + 2, 'sha1')
  if (!timingSafeEqual(derived.subarray(2 * AES_KEY_LENGTH), verifier)) throw new ZipReadError('wrong-password')
  const expected = createHmac('sha1', derived.subarray(AES_KEY_LENGTH, 2 * AES_KEY_LENGTH))
    .update(ciphertext)
    .digest()
    .subarray(0, AES_MAC_LENGTH)
  if (!timingSafeEqual(expected, mac)) throw new ZipReadError('damaged')
  return aesCtrLittleEndian(derived.subarray(0, AES_KEY_LENGTH), ciphertext)
}

function decodeZipCrypto(payload: Uint8Array, password: Uint8Array, crc: number): Uint8Array {
  const cipher = zipCryptoKeys(password)
  const plain = Buffer.alloc(payload.length)
  for (let index = 0; index < payload.length; index += 1) {
    plain[index] = payload[index]! ^ cipher.keyByte()
    cipher.update(plain[index]!)
  }
  // The header's last byte is the CRC's high byte (no data descriptor: checked above).
  if (plain[11] !== crc >>> 24) throw new ZipReadError('wrong-password')
  const data = plain.subarray(12)
  if (crc32(data) !== crc) throw new ZipReadError('damaged')
  return data
}

/** MS-DOS date and time fields (local time, 2-second resolution), as ZIP stores them. */
function dosDateTime(date: Date): {date: number; time: number} {
  const year = Math.min(Math.max(date.getFullYear(), 1980), 2107)
  return {
    date: ((year - 1980) << 9) | ((date.getMonth() + 1) << 5) | date.getDate(),
    time: (date.getHours() << 11) | (date.getMinutes() << 5) | Math.floor(date.getSeconds() / 2),
  }
}
