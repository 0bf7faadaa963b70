import {describe, expect, it} from 'vitest'

import {decodeJwtPayload, signJwt, verifyJwt} from '../../src/lib/site/jwt.js'
import {Secret} from '../../src/lib/secret.js'

// Tokens real CKAN servers returned (ckan-reference/transcript-ckan29.md and transcript-ckan210.md),
// with the jti each one's api_token_list showed afterwards.
const CKAN29_TOKEN =
  'eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJqdGkiOiJqazhCd2c4UERCeGxwQnQ2LUp1OUQ5dEVZSHM0VC1zNGhqZFI3dmVtNFpmQVlQM2ZlNmwzOGhDTUF3UEdINkNRR1h4UElOVEdPZ2FHYzdyYSIsImlhdCI6MTc5NTMxOTgwOX0.-49cdLdzvAsoeWsTUhZerrkwod-teqIqJ6umrnvsrxA'
const CKAN29_JTI = 'jk8Bwg8PDBxlpBt6-Ju9D9tEYHs4T-s4hjdR7vem4ZfAYP3fe6l38hCMAwPGH6CQGXxPINTGOgaGc7ra'
const CKAN210_TOKEN =
  'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJqdGkiOiI4cTRRazI1LS1GZ2dtZnJuVTBZUWUyck1FLUU5a3RKR21TQ3FRQXR3Y0RFIiwiaWF0IjoxNzk1MzE5NjM1fQ.hF1PR8-B-G-F4hVZefqHMOn_oLNbFANv8ys0gOwNieA'
const CKAN210_JTI = '8q4Qk25--FggmfrnU0YQe2rME-E9ktJGmSCqQAtwcDE'

const SECRET = new Secret('dev-secret-not-for-production')
const NOW = 1_795_319_809

function headerAndPayload(token: string): string {
  return token.split('.').slice(0, 2).join('.')
}

describe('decodeJwtPayload', () => {
  it('reads the jti and iat of tokens real CKAN 2.9 and 2.10 servers issued', () => {
    expect(decodeJwtPayload(CKAN29_TOKEN)).toEqual({jti: CKAN29_JTI, iat: 1_795_319_809})
    expect(decodeJwtPayload(CKAN210_TOKEN)).toEqual({jti: CKAN210_JTI, iat: 1_795_319_635})
    expect(decodeJwtPayload(new Secret(CKAN210_TOKEN))?.jti).toBe(CKAN210_JTI)
  })

  it('gives undefined for legacy keys, garbage and tokens without a jti', () => {
    expect(decodeJwtPayload('806824d7-f885-4b31-a312-c4bd4508a5d6')).toBeUndefined()
    expect(decodeJwtPayload('not-a-real-token')).toBeUndefined()
    expect(decodeJwtPayload('a.b.c')).toBeUndefined()
    const noJti = `${CKAN29_TOKEN.split('.')[0]}.${Buffer.from('{"iat":1}').toString('base64url')}.x`
    expect(decodeJwtPayload(noJti)).toBeUndefined()
    const floatIat = `${CKAN29_TOKEN.split('.')[0]}.${Buffer.from('{"jti":"a","iat":1.5}').toString('base64url')}.x`
    expect(decodeJwtPayload(floatIat)).toBeUndefined()
  })
})

describe('signJwt', () => {
  it('writes header and payload byte for byte as CKAN 2.9 (PyJWT 1.7.1) and 2.10+ (PyJWT 2) do', () => {
    const token29 = signJwt({jti: CKAN29_JTI, iat: 1_795_319_809}, SECRET, '2.9')
    expect(headerAndPayload(token29)).toBe(headerAndPayload(CKAN29_TOKEN))
    const token210 = signJwt({jti: CKAN210_JTI, iat: 1_795_319_635}, SECRET, '2.10+')
    expect(headerAndPayload(token210)).toBe(headerAndPayload(CKAN210_TOKEN))
  })

  it('orders the claims jti, iat, exp whatever order it is given', () => {
    const token = signJwt({exp: NOW + 60, iat: NOW, jti: 'abc'}, SECRET, '2.10+')
    const json = Buffer.from(token.split('.')[1] as string, 'base64url').toString('utf8')
    expect(json).toBe(`{"jti":"abc","iat":${NOW},"exp":${NOW + 60}}`)
  })
})

describe('verifyJwt', () => {
  const options = {checkIatInFuture: true, now: NOW}

  it('accepts a token signed with the same secret, in either style', () => {
    for (const style of ['2.9', '2.10+'] as const) {
      const token = signJwt({jti: 'abc', iat: NOW}, SECRET, style)
      expect(verifyJwt(token, SECRET, options)).toEqual({ok: true, payload: {jti: 'abc', iat: NOW}})
    }
  })

  it('rejects a token signed with another secret, or altered after signing', () => {
    const token = signJwt({jti: 'abc', iat: NOW}, SECRET, '2.9')
    expect(verifyJwt(token, new Secret('other'), options)).toEqual({ok: false, reason: 'bad-signature'})
    const [header, , signature] = token.split('.')
    const forged = `${header}.${Buffer.from(`{"jti":"xyz","iat":${NOW}}`).toString('base64url')}.${signature}`
    expect(verifyJwt(forged, SECRET, options)).toEqual({ok: false, reason: 'bad-signature'})
    expect(verifyJwt(CKAN29_TOKEN, SECRET, options)).toEqual({ok: false, reason: 'bad-signature'})
  })

  it('rejects an expired token, and a future iat only when asked (PyJWT 2 does, 1.7.1 does not)', () => {
    const expired = signJwt({jti: 'abc', iat: NOW - 100, exp: NOW}, SECRET, '2.10+')
    expect(verifyJwt(expired, SECRET, options)).toEqual({ok: false, reason: 'expired'})
    const live = signJwt({jti: 'abc', iat: NOW - 100, exp: NOW + 1}, SECRET, '2.10+')
    expect(verifyJwt(live, SECRET, options).ok).toBe(true)
    const future = signJwt({jti: 'abc', iat: NOW + 30}, SECRET, '2.10+')
    expect(verifyJwt(future, SECRET, options)).toEqual({ok: false, reason: 'iat-in-future'})
    expect(verifyJwt(future, SECRET, {checkIatInFuture: false, now: NOW}).ok).toBe(true)
  })

  it('rejects other algorithms and things that are not JWTs', () => {
    const none = `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${Buffer.from('{"jti":"a","iat":1}').toString('base64url')}.`
    expect(verifyJwt(none, SECRET, options)).toEqual({ok: false, reason: 'unsupported-algorithm'})
    expect(verifyJwt('806824d7-f885-4b31-a312-c4bd4508a5d6', SECRET, options)).toEqual({ok: false, reason: 'malformed'})
    expect(verifyJwt('Bearer x.y.z', SECRET, options)).toEqual({ok: false, reason: 'malformed'})
  })
})
