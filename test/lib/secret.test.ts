import {inspect} from 'node:util'
import {describe, expect, it} from 'vitest'

import {fingerprintOf, Secret} from '../../src/lib/secret.js'

const VALUE = 'eyJhbGciOiJIUzI1NiJ9.eyJqdGkiOiJzZWNyZXQifQ.c2lnbmF0dXJl'

describe('Secret', () => {
  it('never shows its value when printed, interpolated, serialised or inspected', () => {
    const secret = new Secret(VALUE)
    const renderings = [
      String(secret),
      `${secret}`,
      JSON.stringify({secret}),
      inspect({nested: {secret}}),
      `${[secret]}`,
      secret + '',
      inspect(secret, {showHidden: true, depth: 5}),
    ]
    for (const text of renderings) {
      expect(text).not.toContain(VALUE)
      expect(text).toContain('[redacted]')
    }
    expect(JSON.stringify({...secret})).toBe('{}')
  })

  it('gives its value only through reveal(), and a stable 8-hex fingerprint', () => {
    const secret = new Secret(VALUE)
    expect(secret.reveal()).toBe(VALUE)
    expect(secret.fingerprint()).toMatch(/^[\da-f]{8}$/)
    expect(secret.fingerprint()).toBe(fingerprintOf(VALUE))
    expect(new Secret('other').fingerprint()).not.toBe(secret.fingerprint())
  })
})
