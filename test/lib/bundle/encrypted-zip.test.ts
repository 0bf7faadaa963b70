import {describe, expect, it} from 'vitest'

import {crc32, encryptedZip} from '../../../src/lib/bundle/encrypted-zip.js'
import {Secret} from '../../../src/lib/secret.js'

describe('encryptedZip', () => {
  it('computes the standard CRC-32', () => {
    expect(crc32(Buffer.from('123456789'))).toBe(0xcb_f4_39_26)
  })

  it('never stores the plaintext, and salts every archive differently', async () => {
    const entries = [
      {data: Buffer.from('eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.payload.signature\n'), name: 'api_key.txt'},
    ]
    for (const encryption of ['aes256', 'zipcrypto'] as const) {
      const first = Buffer.from(await encryptedZip(entries, new Secret('pw-one-two-three'), encryption))
      const second = Buffer.from(await encryptedZip(entries, new Secret('pw-one-two-three'), encryption))
      expect(first.includes('eyJ0eXAi')).toBe(false)
      expect(first.includes('pw-one')).toBe(false)
      expect(first.equals(second)).toBe(false)
    }
  })
})
