import {describe, expect, it} from 'vitest'

import {parseServerCertPem, readServerCert} from '../../../src/lib/bundle/server-cert.js'
import {MigrateError} from '../../../src/lib/errors.js'
import {makeCertificate, temporaryFolder, writeText} from './bundle-fixtures.js'

describe('server certificate', () => {
  it('reads a chain of PEM certificates, server first, and checks the CN against the host', async () => {
    const server = await makeCertificate('dcor.example.org')
    const other = await makeCertificate('ca.example.org')
    const path = await writeText(`${await temporaryFolder()}/chain.pem`, `junk before\n${server.cert}${other.cert}`)
    const read = await readServerCert(path, 'dcor.example.org')
    expect(read.count).toBe(2)
    expect(read.subject.cn).toBe('dcor.example.org')
    expect(read.pem).toBe(`${server.cert}${other.cert}`)
    expect(read.warnings).toEqual([])
    await expect(readServerCert(path, 'data.example.org')).rejects.toMatchObject({
      exitCode: 15,
      message: expect.stringMatching(/CN is "dcor\.example\.org", not data\.example\.org/),
    })
    const allowed = await readServerCert(path, 'data.example.org', {allowHostMismatch: true})
    expect(allowed.warnings.join('\n')).toMatch(/CN is "dcor\.example\.org", not data\.example\.org/)
  })

  it('refuses private keys, damaged blocks and non-PEM text', async () => {
    const {cert, key} = await makeCertificate('dcor.example.org')
    const broken = cert.replace(/\n[A-Za-z0-9+/]{20}/, '\n!!!!')
    for (const [text, message] of [
      [`${cert}${key}`, /holds a private key/],
      ['not a certificate', /is not a PEM certificate/],
      [broken, /certificate 1 is not a valid X\.509 certificate/],
    ] as const) {
      expect(() => parseServerCertPem(text, 'x.pem')).toThrow(message)
      try {
        parseServerCertPem(text, 'x.pem')
      } catch (error) {
        expect((error as MigrateError).exitCode).toBe(7)
      }
    }
  })
})
