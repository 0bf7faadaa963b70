import {createHmac, timingSafeEqual} from 'node:crypto'

import type {Secret} from '../secret.js'

/**
 * CKAN's API tokens: HS256 JWTs whose payload is `{"jti": <api_token.id>, "iat": <seconds>}`
 * (plus `exp` with the expire_api_token plugin), written the way PyJWT writes them.
 *
 * - '2.9': PyJWT 1.7.1, header `{"typ":"JWT","alg":"HS256"}` (prefix `eyJ0eXAiOiJKV1Qi`).
 * - '2.10+': PyJWT 2.x, sorted header `{"alg":"HS256","typ":"JWT"}` (prefix `eyJhbGciOiJIUzI1NiIs`).
 *
 * Both verify in every CKAN version; only the bytes differ.
 */
export type JwtStyle = '2.9' | '2.10+'

export type JwtPayload = {
  exp?: number
  iat: number
  jti: string
}

export type JwtVerifyOptions = {
  /** PyJWT 2.x (CKAN 2.10+) rejects an `iat` later than now; PyJWT 1.7.1 (CKAN 2.9) does not. */
  checkIatInFuture: boolean
  /** The current time in seconds since the epoch (tests); defaults to the clock. */
  now?: number
}

export type JwtVerification =
  | {ok: false; reason: 'bad-signature' | 'expired' | 'iat-in-future' | 'malformed' | 'unsupported-algorithm'}
  | {ok: true; payload: JwtPayload}

const HEADERS: Record<JwtStyle, string> = {
  '2.10+': base64url('{"alg":"HS256","typ":"JWT"}'),
  '2.9': base64url('{"typ":"JWT","alg":"HS256"}'),
}

/** Signs `payload` (keys written in the order jti, iat, exp, compact, as CKAN does). */
export function signJwt(payload: JwtPayload, secret: Secret, style: JwtStyle): string {
  const claims: JwtPayload = {jti: payload.jti, iat: payload.iat}
  if (payload.exp !== undefined) claims.exp = payload.exp
  const signingInput = `${HEADERS[style]}.${base64url(pythonJson(claims))}`
  return `${signingInput}.${hmac(signingInput, secret)}`
}

/**
 * Verifies a token as PyJWT does with `algorithms=["HS256"]`, leeway 0: signature (compared in
 * constant time), `exp` (expired when `exp <= now`), `iat` (an integer; in the future only
 * rejected when `checkIatInFuture`), and a string `jti` (CKAN requires it).
 */
export function verifyJwt(token: string, secret: Secret, options: JwtVerifyOptions): JwtVerification {
  const parts = token.split('.')
  if (parts.length !== 3) return {ok: false, reason: 'malformed'}
  const [headerPart, payloadPart, signaturePart] = parts as [string, string, string]
  const header = parseJsonSegment(headerPart)
  if (header === undefined || typeof header !== 'object' || header === null) return {ok: false, reason: 'malformed'}
  if ((header as {alg?: unknown}).alg !== 'HS256') return {ok: false, reason: 'unsupported-algorithm'}
  const expected = Buffer.from(hmac(`${headerPart}.${payloadPart}`, secret), 'utf8')
  const given = Buffer.from(signaturePart, 'utf8')
  if (expected.length !== given.length || !timingSafeEqual(expected, given)) return {ok: false, reason: 'bad-signature'}
  const payload = toPayload(parseJsonSegment(payloadPart))
  if (!payload) return {ok: false, reason: 'malformed'}
  const now = options.now ?? Math.floor(Date.now() / 1000)
  if (payload.exp !== undefined && payload.exp <= now) return {ok: false, reason: 'expired'}
  if (options.checkIatInFuture && payload.iat > now) return {ok: false, reason: 'iat-in-future'}
  return {ok: true, payload}
}

/**
 * The payload of a CKAN token without checking its signature: how a client learns the jti of a
 * token it was just given (api_token_create does not return it). Undefined for anything that is
 * not a JWT with a string `jti` and an integer `iat`.
 */
export function decodeJwtPayload(token: string | Secret): JwtPayload | undefined {
  const value = typeof token === 'string' ? token : token.reveal()
  const parts = value.split('.')
  if (parts.length !== 3) return undefined
  return toPayload(parseJsonSegment(parts[1] as string))
}

function toPayload(value: unknown): JwtPayload | undefined {
  if (typeof value !== 'object' || value === null) return undefined
  const {exp, iat, jti} = value as Record<string, unknown>
  if (typeof jti !== 'string' || !Number.isInteger(iat)) return undefined
  if (exp !== undefined && typeof exp !== 'number') return undefined
  const payload: JwtPayload = {jti, iat: iat as number}
  if (exp !== undefined) payload.exp = exp as number
  return payload
}

function parseJsonSegment(segment: string): unknown {
  if (!/^[A-Za-z0-9_-]*$/.test(segment)) return undefined
  try {
    return JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'))
  } catch {
    return undefined
  }
}

function hmac(signingInput: string, secret: Secret): string {
  return createHmac('sha256', secret.reveal()).update(signingInput, 'utf8').digest('base64url')
}

function base64url(text: string): string {
  return Buffer.from(text, 'utf8').toString('base64url')
}

/** JSON as Python's json.dumps(separators=(",", ":")) writes it: anything outside " "–"~" escaped as \uXXXX. */
function pythonJson(value: unknown): string {
  return JSON.stringify(value).replaceAll(
    /[\u007f-\uffff]/g,
    (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`,
  )
}
