import {createHash, createHmac, randomBytes, randomUUID, timingSafeEqual} from 'node:crypto'
import type pg from 'pg'

import {signJwt} from '../lib/site/jwt.js'
import {CKAN_RELEASES, type CkanVersion} from '../lib/site/ckan-version.js'
import type {EmulatorConfig} from './emulator-config.js'
import {isoformat, localNowTimestamp, utcNowTimestamp, utcTimestampAfter} from './emulator-json.js'

/** The user a request was identified as (undefined: anonymous). */
export type Caller = {id: string; name: string; state: string; sysadmin: boolean}

export type ActionContext = {
  caller: Caller | undefined
  config: EmulatorConfig
  data: Record<string, unknown>
  pool: pg.Pool
  version: CkanVersion
}

/** CKAN's logic exceptions, turned into the envelope by the emulator. */
export class ActionError extends Error {
  readonly body: Record<string, unknown>
  readonly status: number

  constructor(status: number, body: Record<string, unknown>) {
    super(String(body.message ?? body.__type))
    this.status = status
    this.body = body
  }
}

const notAuthorized = (message?: string) =>
  new ActionError(403, {
    __type: 'Authorization Error',
    message: message ? `Access denied: ${message}` : 'Access denied',
  })
const notFound = (message?: string) =>
  new ActionError(404, {__type: 'Not Found Error', message: message ? `Not found: ${message}` : 'Not found'})
const validationError = (errors: Record<string, string[]>) =>
  new ActionError(409, {...errors, __type: 'Validation Error'})

export type ActionDefinition = {
  /** Side-effect free actions (logic/action/get.py) accept GET and URL parameters. */
  getable: boolean
  run(context: ActionContext): Promise<unknown>
}

type AuthResult = {msg?: string; success: boolean}

/**
 * authz.is_authorized: deleted users are always refused (only reachable on 2.9: 2.10+ make them
 * anonymous), sysadmins pass, 2.9 refuses anonymous callers of actions outside get.py before the
 * auth function runs (2.10+'s anonymous user object passes that check), then the auth function.
 */
function checkAccess(context: ActionContext, action: string, anonymousAllowed: boolean, auth: () => AuthResult): void {
  const {caller} = context
  if (caller?.state === 'deleted') throw notAuthorized()
  if (caller?.sysadmin) return
  if (!anonymousAllowed && !caller && context.version === '2.9')
    throw notAuthorized(`Action ${action} requires an authenticated user`)
  const result = auth()
  if (!result.success) throw notAuthorized(result.msg)
}

/** _get_or_bust: a 409 naming every key absent from the request (present-but-empty passes). */
function getOrBust(data: Record<string, unknown>, keys: string[]): void {
  const missing = keys.filter((key) => !(key in data)).sort()
  if (missing.length > 0) throw validationError(Object.fromEntries(missing.map((key) => [key, ['Missing value']])))
}

/** unicode_safe: what CKAN's validators turn a JSON value into. */
function text(value: unknown): string {
  if (typeof value === 'string') return value
  if (value === null || value === undefined) return ''
  if (typeof value === 'object') return JSON.stringify(value)
  return String(value)
}

/** not_empty: missing, None, '' and other falsy values fail. */
function isEmpty(value: unknown): boolean {
  return (
    value === undefined ||
    value === null ||
    value === '' ||
    value === 0 ||
    value === false ||
    (typeof value === 'object' && !truthy(value))
  )
}

type UserRow = {
  about: null | string
  activity_streams_email_notifications: boolean
  apikey: null | string
  created: null | string
  email: null | string
  fullname: null | string
  id: string
  image_url: null | string
  last_active?: null | string
  name: string
  number_created_packages: number | string
  state: string
  sysadmin: boolean
}

const USER_COLUMNS = (version: CkanVersion) =>
  `u.id, u.name, u.fullname, u.created, u.about, ${version === '2.9' ? '' : 'u.last_active, '}u.activity_streams_email_notifications,
   u.sysadmin, u.state, u.image_url, u.email, u.apikey`

/**
 * User.number_created_packages: datasets the user created that are active and public, or, where
 * the SQL condition `all` holds (user_show for the user themself or a sysadmin), every one not
 * deleted (drafts and private ones too).
 */
const packageCount = (all: string) =>
  `(SELECT count(*) FROM package p WHERE p.creator_user_id = u.id
     AND ((${all} AND p.state != 'deleted') OR (p.state = 'active' AND p.private = false)))
   AS number_created_packages`

/**
 * Python's urlparse(url).geturl(): the query and fragment are dropped when empty, and so are the
 * `;params` of the last path segment.
 */
function pythonUrlRoundTrip(url: string): string {
  let rest = url
  let fragment = ''
  let query = ''
  const hash = rest.indexOf('#')
  if (hash >= 0) [rest, fragment] = [rest.slice(0, hash), rest.slice(hash + 1)]
  const question = rest.indexOf('?')
  if (question >= 0) [rest, query] = [rest.slice(0, question), rest.slice(question + 1)]
  let params = ''
  const semicolon = rest.indexOf(';', Math.max(rest.lastIndexOf('/'), 0))
  if (semicolon >= 0) [rest, params] = [rest.slice(0, semicolon), rest.slice(semicolon + 1)]
  return `${rest}${params ? `;${params}` : ''}${query ? `?${query}` : ''}${fragment ? `#${fragment}` : ''}`
}

/**
 * user_dictize's image_display_url: image_url as it is (None, '' or a value starting with
 * "http"), else an uploaded file, h.url_for_static('uploads/user/<image_url>', qualified=True):
 * the scheme and host of ckan.site_url (not its path), then /uploads/user/<image_url>.
 */
function imageDisplayUrl(imageUrl: null | string, siteUrl: string): null | string {
  if (!imageUrl || imageUrl.startsWith('http')) return imageUrl
  const site = /^([A-Za-z][\w+.-]*):\/\/([^/?#]*)/.exec(siteUrl)
  const origin = site ? `${site[1]!.toLowerCase()}://${site[2]}` : siteUrl
  return origin + pythonUrlRoundTrip(`/uploads/user/${imageUrl}`)
}

/** user_dictize: the fields and key order each version returns; apikey and email only for the user or a sysadmin. */
function userDict(
  row: UserRow,
  context: ActionContext,
  privateFields: boolean,
  emailFirst = false,
): Record<string, unknown> {
  const {config, version} = context
  const fullname = row.fullname?.trim() ? row.fullname : null
  const dict: Record<string, unknown> = {
    id: row.id,
    name: row.name,
    fullname: row.fullname,
    created: isoformat(row.created),
    about: row.about,
  }
  if (version !== '2.9') dict.last_active = isoformat(row.last_active)
  Object.assign(dict, {
    activity_streams_email_notifications: row.activity_streams_email_notifications ?? false,
    sysadmin: row.sysadmin ?? false,
    state: row.state,
    image_url: row.image_url,
    display_name: fullname ?? row.name,
    email_hash: createHash('md5')
      .update((row.email ?? '').trim().toLowerCase(), 'utf8')
      .digest('hex'),
    number_created_packages: Number(row.number_created_packages ?? 0),
  })
  if (privateFields) {
    if (emailFirst) Object.assign(dict, {email: row.email, apikey: row.apikey})
    else Object.assign(dict, {apikey: row.apikey, email: row.email})
  }
  dict.image_display_url = imageDisplayUrl(row.image_url, config.siteUrl)
  return dict
}

async function findUser(pool: pg.Pool, reference: string): Promise<undefined | {id: string; name: string}> {
  const result = await pool.query<{id: string; name: string}>({
    name: 'emulator-find-user',
    text: 'SELECT id, name FROM "user" WHERE id = $1 OR name = $1 ORDER BY (id = $1) DESC LIMIT 1',
    values: [reference],
  })
  return result.rows[0]
}

function sign(context: ActionContext, claims: {exp?: number; iat: number; jti: string}): string {
  const secret = context.config.encodeSecret
  if (secret instanceof Error) throw secret
  return signJwt(claims, secret, context.version === '2.9' ? '2.9' : '2.10+')
}

/** An exception CKAN does not catch (a TypeError in PyJWT, a DB error): CKAN answers 500. */
class Crash extends Error {}

/**
 * Python's int(value) for decoded JSON: the integer, undefined for a ValueError, or a Crash for
 * the TypeError / OverflowError PyJWT and CKAN do not catch.
 */
function pythonInt(value: unknown): number | undefined {
  if (typeof value === 'boolean') return Number(value)
  if (typeof value === 'number') {
    if (Number.isNaN(value)) return undefined
    if (!Number.isFinite(value)) throw new Crash('OverflowError: cannot convert float infinity to integer')
    return Math.trunc(value)
  }
  if (typeof value === 'string') {
    const match = /^\s*([+-]?\d+(?:_\d+)*)\s*$/.exec(value)
    return match ? Number(match[1]!.replaceAll('_', '')) : undefined
  }
  throw new Crash(`TypeError: int() argument must be a string or a number, not ${pythonType(value)}`)
}

function pythonType(value: unknown): string {
  if (value === null || value === undefined) return "'NoneType'"
  return Array.isArray(value) ? "'list'" : "'dict'"
}

/** Python's bool(value) for decoded JSON. */
function truthy(value: unknown): boolean {
  if (Array.isArray(value)) return value.length > 0
  if (typeof value === 'object' && value !== null) return Object.keys(value).length > 0
  return Boolean(value)
}

/**
 * PyJWT's base64url_decode: pad to a multiple of 4, then binascii's lenient decoder (characters
 * outside the alphabet skipped, decoding ends at a complete pad); undefined for binascii.Error.
 */
function pyBase64(segment: string): Buffer | undefined {
  const padded = segment + '='.repeat((4 - (segment.length % 4)) % 4)
  const alphabet = /[A-Za-z0-9+/]/
  const translated = padded.replaceAll('-', '+').replaceAll('_', '/')
  let data = ''
  let ended = false
  for (let index = 0; index < translated.length && !ended; index++) {
    const char = translated[index]!
    if (char === '=') {
      const quad = data.length % 4
      if (quad < 2) continue
      if (quad === 2) {
        let next = index + 1
        while (next < translated.length && !alphabet.test(translated[next]!) && translated[next] !== '=') next++
        if (translated[next] !== '=') continue
      }
      ended = true
    } else if (alphabet.test(char)) data += char
  }
  const rest = data.length % 4
  if (rest === 1 || (rest > 1 && !ended)) return undefined
  return Buffer.from(data, 'base64')
}

function parseJsonObject(bytes: Buffer | undefined): Record<string, unknown> | undefined {
  if (!bytes) return undefined
  try {
    const value: unknown = JSON.parse(new TextDecoder('utf-8', {fatal: true}).decode(bytes))
    return typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined
  } catch {
    return undefined
  }
}

/**
 * api_token.decode: the jti of a token PyJWT accepts (HS256 with the decode secret), else
 * undefined. 2.9 follows PyJWT 1.7.1, 2.10+ PyJWT 2.12: the segments are split as PyJWT splits
 * them and base64-decoded leniently (padding allowed), the signature bytes compared; `iat` is
 * optional (any number; 2.10+ refuse one in the future), `nbf` in the future and `exp` in the
 * past are refused (1.7.1: `exp < now` in whole seconds; 2.x: `exp <= now`), and any `aud`
 * (2.10+: any non-empty `aud`) is refused as no audience is expected. Errors PyJWT lets escape
 * (int(None), int(inf), comparing a string `iat`) throw, as CKAN answers 500.
 */
export function decodeToken(config: EmulatorConfig, version: CkanVersion, token: string): undefined | {jti: string} {
  const secret = config.decodeSecret
  if (secret instanceof Error) throw secret
  const cut = token.lastIndexOf('.')
  const signingInput = token.slice(0, Math.max(cut, 0))
  const dot = signingInput.indexOf('.')
  if (cut < 0 || dot < 0) return undefined
  const header = parseJsonObject(pyBase64(signingInput.slice(0, dot)))
  const payloadBytes = pyBase64(signingInput.slice(dot + 1))
  const signature = pyBase64(token.slice(cut + 1))
  if (!header || !payloadBytes || !signature || header.alg !== 'HS256') return undefined
  const expected = createHmac('sha256', secret.reveal()).update(signingInput, 'utf8').digest()
  if (expected.length !== signature.length || !timingSafeEqual(expected, signature)) return undefined
  const payload = parseJsonObject(payloadBytes)
  if (!payload) return undefined
  const modern = version !== '2.9'
  const now = modern ? Date.now() / 1000 : Math.floor(Date.now() / 1000)
  if ('iat' in payload) {
    const iat = pythonInt(payload.iat)
    if (iat === undefined) return undefined
    if (modern && typeof payload.iat === 'string')
      throw new Crash("TypeError: '>' not supported between 'str' and 'float'")
    if (modern && Number(payload.iat) > now) return undefined
  }
  if ('nbf' in payload) {
    const nbf = pythonInt(payload.nbf)
    if (nbf === undefined || nbf > now) return undefined
  }
  if ('exp' in payload) {
    const exp = pythonInt(payload.exp)
    if (exp === undefined || (modern ? exp <= now : exp < now)) return undefined
  }
  if (modern ? truthy(payload.aud) : 'aud' in payload) return undefined
  // PyJWT 2.10+ require string `sub` and `jti`; CKAN then needs a jti (a missing one is anonymous).
  if (
    modern &&
    (('sub' in payload && typeof payload.sub !== 'string') || ('jti' in payload && typeof payload.jti !== 'string'))
  )
    return undefined
  const {jti} = payload
  if (jti === undefined || jti === null) return undefined
  // 2.9: ApiToken.get(<number or list>) makes PostgreSQL compare text with another type.
  if (typeof jti !== 'string') throw new Crash('ProgrammingError: operator does not exist: text = integer')
  return {jti}
}

/**
 * not_empty, int_validator, is_positive_integer (the expire_api_token schema): the integer, or the
 * message of the first validator that fails. A blank string passes int_validator as None and then
 * breaks is_positive_integer's `None < 1` (a TypeError: CKAN answers 500).
 */
function positiveInteger(value: unknown): Crash | number | string {
  if (isEmpty(value)) return 'Missing value'
  let number: number | undefined
  if (typeof value === 'string') {
    if (value.trim() === '') return new Crash("TypeError: '<' not supported between instances of 'NoneType' and 'int'")
    number = /^\s*[+-]?\d+(?:_\d+)*\s*$/.test(value) ? Number(value.replaceAll('_', '')) : undefined
  } else if (typeof value === 'number' || typeof value === 'boolean') {
    number = Number.isInteger(Number(value)) ? Number(value) : undefined
  }
  if (number === undefined) return 'Invalid integer'
  return number < 1 ? 'Must be a positive integer' : number
}

async function apiTokenCreate(context: ActionContext): Promise<unknown> {
  const {caller, config, data, pool} = context
  getOrBust(data, ['user', 'name'])
  const errors: Record<string, string[]> = {}
  const name = text(data.name)
  if (isEmpty(data.name) || name === '') errors.name = ['Missing value']
  const integers: Record<string, number> = {}
  let crash: Crash | undefined
  if (config.expireApiToken) {
    for (const key of ['expires_in', 'unit']) {
      const checked = positiveInteger(data[key])
      if (checked instanceof Crash) crash ??= checked
      else if (typeof checked === 'string') errors[key] = [checked]
      else integers[key] = checked
    }
  }
  const valid = Object.keys(errors).length === 0 && !crash
  const deniedAll = caller?.state === 'deleted'
  const sysadmin = Boolean(caller?.sysadmin) && !deniedAll
  const created = utcNowTimestamp()
  const jti = randomBytes(config.nbytes).toString('base64url')
  let exp: number | undefined
  let extras: null | string = null
  if (valid && config.expireApiToken) {
    // postprocess_api_token: utcnow() + the lifetime, stored as isoformat() and signed as whole seconds.
    const expiry = utcTimestampAfter(integers.expires_in! * integers.unit! || config.defaultLifetime)
    exp = expiry.seconds
    extras = JSON.stringify({expire_api_token: {exp: isoformat(expiry.text)}})
  }
  // One round trip: find the user (404 first), then insert only when allowed and valid.
  const result = await pool.query<{created: boolean; id: string; name: string}>({
    name: 'emulator-token-create',
    text: `WITH target AS (SELECT id, name FROM "user" WHERE id = $1 OR name = $1 ORDER BY (id = $1) DESC LIMIT 1),
           ins AS (INSERT INTO api_token (id, name, user_id, created_at, last_access, plugin_extras)
                   SELECT $2, $3, target.id, $4::timestamp, NULL, $5::jsonb FROM target
                   WHERE $6::boolean AND ($7::boolean OR target.name = $8) RETURNING id)
           SELECT target.id, target.name, EXISTS (SELECT 1 FROM ins) AS created FROM target`,
    values: [
      text(data.user),
      jti,
      name,
      created.text,
      extras,
      valid,
      sysadmin,
      deniedAll ? null : (caller?.name ?? null),
    ],
  })
  const target = result.rows[0]
  if (!target) throw notFound('User not found')
  if (!target.created) {
    checkAccess(context, 'api_token_create', false, () => ({success: target.name === caller?.name}))
    throw crash ?? validationError(errors)
  }
  const claims: {exp?: number; iat: number; jti: string} = {jti, iat: created.seconds}
  if (exp !== undefined) claims.exp = exp
  return {token: sign(context, claims)}
}

async function apiTokenList(context: ActionContext): Promise<unknown> {
  const {caller, data, pool, version} = context
  let reference: unknown
  if (version === '2.9') {
    getOrBust(data, ['user'])
    reference = data.user
  } else {
    // data_dict.get("user_id", data_dict.get("user")), then `if not id_or_name`.
    reference = 'user_id' in data ? data.user_id : data.user
    if (isEmpty(reference)) throw validationError({user_id: ['Missing value']})
  }
  // One round trip: the user and their tokens (read before the access check, which decides
  // whether they are shown; a read changes nothing). No row: no such user; a row with a null
  // token id: a user without tokens.
  const result = await pool.query<{
    created_at: string
    id: null | string
    last_access: null | string
    name: string
    target_id: string
    target_name: string
    user_id: string
  }>({
    name: 'emulator-token-list',
    text: `WITH target AS (SELECT id, name FROM "user" WHERE id = $1 OR name = $1 ORDER BY (id = $1) DESC LIMIT 1)
           SELECT target.id AS target_id, target.name AS target_name,
                  t.id, t.name, t.user_id, t.created_at, t.last_access
           FROM target LEFT JOIN api_token t ON t.user_id = target.id
           ORDER BY t.created_at, t.id`,
    values: [text(reference)],
  })
  const first = result.rows[0]
  const target = first && {id: first.target_id, name: first.target_name}
  checkAccess(context, 'api_token_list', true, () => ({success: target !== undefined && target.name === caller?.name}))
  if (!target) throw notFound('User not found')
  return result.rows
    .filter((row) => row.id !== null)
    .map((row) => ({
      id: row.id,
      name: row.name,
      user_id: row.user_id,
      created_at: isoformat(row.created_at),
      last_access: isoformat(row.last_access),
    }))
}

async function apiTokenRevoke(context: ActionContext): Promise<unknown> {
  const {caller, config, data, pool, version} = context
  let jti: null | string = isEmpty(data.jti) ? null : text(data.jti)
  if (jti === null) {
    getOrBust(data, ['token'])
    jti = decodeToken(config, version, text(data.token))?.jti ?? null
  }
  const owner = await pool.query<{name: string}>({
    name: 'emulator-token-owner',
    text: 'SELECT u.name FROM api_token t JOIN "user" u ON u.id = t.user_id WHERE t.id = $1',
    values: [jti],
  })
  checkAccess(context, 'api_token_revoke', false, () => ({
    success: Boolean(caller) && owner.rows[0]?.name === caller?.name,
  }))
  await pool.query({name: 'emulator-token-revoke', text: 'DELETE FROM api_token WHERE id = $1', values: [jti]})
  return null
}

async function getSiteUser(context: ActionContext): Promise<unknown> {
  const {config, pool} = context
  checkAccess(context, 'get_site_user', true, () => ({
    msg: 'Only internal services allowed to use this action',
    success: false,
  }))
  let row = (
    await pool.query<{apikey: null | string; name: string}>('SELECT name, apikey FROM "user" WHERE name = $1', [
      config.siteId,
    ])
  ).rows[0]
  if (!row) {
    const apikey = randomUUID()
    await pool.query(
      `INSERT INTO "user" (id, name, password, apikey, sysadmin, state, created) VALUES ($1, $2, $3, $3, true, 'active', $4::timestamp)
       ON CONFLICT (name) DO NOTHING`,
      [randomUUID(), config.siteId, apikey, localNowTimestamp()],
    )
    row = (
      await pool.query<{apikey: null | string; name: string}>('SELECT name, apikey FROM "user" WHERE name = $1', [
        config.siteId,
      ])
    ).rows[0]!
  }
  return {name: row.name, apikey: row.apikey}
}

async function statusShow(context: ActionContext): Promise<unknown> {
  const {config, version} = context
  checkAccess(context, 'status_show', true, () => ({success: true}))
  const common = {site_title: config.siteTitle, site_description: config.siteDescription, site_url: config.siteUrl}
  if (version === '2.9') {
    return {
      ...common,
      ckan_version: CKAN_RELEASES[version],
      error_emails_to: config.errorEmailsTo,
      locale_default: config.localeDefault,
      extensions: config.plugins,
    }
  }
  return {
    ...common,
    error_emails_to: config.errorEmailsTo,
    locale_default: config.localeDefault,
    extensions: config.plugins,
    ckan_version: CKAN_RELEASES[version],
  }
}

async function userShow(context: ActionContext): Promise<unknown> {
  const {caller, data, pool, version} = context
  // 2.10+: without an `id` key the caller is shown (an anonymous caller's name is '').
  const id = version !== '2.9' && !('id' in data) ? (caller?.name ?? '') : data.id
  const reference = isEmpty(id) ? undefined : text(id)
  // 2.9 raises "not found" before the access check when there is no id; 2.10+ check access first.
  if (reference === undefined && version === '2.9') throw notFound()
  let row: undefined | UserRow
  if (reference !== undefined) {
    // Drafts and private datasets are counted for the user themself and for sysadmins.
    const result = await pool.query<UserRow>({
      name: `emulator-user-show-${version === '2.9' ? '29' : '210'}`,
      text: `SELECT ${USER_COLUMNS(version)}, ${packageCount('($2::boolean OR u.name = $3)')}
             FROM "user" u WHERE u.id = $1 OR u.name = $1 ORDER BY (u.id = $1) DESC LIMIT 1`,
      values: [reference, Boolean(caller?.sysadmin), caller?.name ?? null],
    })
    row = result.rows[0]
  }
  // The id is looked up, then access checked, then "not found".
  checkAccess(context, 'user_show', true, () => restrictAnonymous(context))
  if (!row) throw notFound()
  return userDict(row, context, Boolean(caller?.sysadmin) || caller?.name === row.name)
}

function asBool(value: unknown, fallback: boolean): boolean {
  if (value === undefined || value === null || value === '') return fallback
  if (typeof value === 'boolean') return value
  return ['1', 'on', 'true', 'yes'].includes(String(value).toLowerCase())
}

/** auth/get.py: user details are public unless ckan.auth.public_user_details = false (restrict_anon). */
function restrictAnonymous(context: ActionContext): AuthResult {
  return {success: context.config.publicUserDetails || context.caller !== undefined}
}

/** The user table's columns (mapped attributes of model.User) user_list's order_by may name. */
const USER_TABLE_COLUMNS = new Set([
  'about',
  'activity_streams_email_notifications',
  'apikey',
  'created',
  'email',
  'fullname',
  'id',
  'image_url',
  'name',
  'password',
  'plugin_extras',
  'reset_key',
  'state',
  'sysadmin',
])

/**
 * user_list's ORDER BY: display_name (the default, and for a name that is no attribute of
 * model.User), number_created_packages then name, or any column of the user table alone (CKAN's
 * `order_by_field == 'fullname'` test on a column is never true, so fullname, about and sysadmin
 * get no tiebreak either). `edits` is a 409. Other attributes of the class (methods,
 * properties) are not emulated and fall back to display_name.
 */
function userListOrder(value: unknown, version: CkanVersion, allFields: boolean): string {
  if (value === undefined) value = 'display_name'
  // getattr(model.User, <not a string>) is a TypeError.
  if (typeof value !== 'string') throw new Crash('TypeError: attribute name must be string')
  if (value === 'edits')
    throw new ActionError(409, {message: 'order_by=edits is no longer supported', __type: 'Validation Error'})
  // Ordered by the label of a subquery that the names-only query (all_fields=false) does not select.
  if (value === 'number_created_packages') {
    if (!allFields) throw new Crash('ProgrammingError: column "number_created_packages" does not exist')
    return 'number_created_packages, u.name'
  }
  const column = value === '_password' ? 'password' : value
  if (USER_TABLE_COLUMNS.has(column) || (column === 'last_active' && version !== '2.9')) {
    return `u.${column}`
  }
  return `CASE WHEN u.fullname IS NULL OR u.fullname = '' THEN u.name ELSE u.fullname END`
}

async function userList(context: ActionContext): Promise<unknown> {
  const {caller, config, data, pool, version} = context
  // Only sysadmins may pass `email` (refused before anything else for everyone else).
  checkAccess(context, 'user_list', true, () => (truthy(data.email) ? {success: false} : restrictAnonymous(context)))
  const sysadmin = Boolean(caller?.sysadmin)
  const allFields = asBool(data.all_fields, true)
  const conditions: string[] = []
  const values: unknown[] = []
  if (!asBool(data.include_site_user, false)) {
    values.push(config.siteId)
    conditions.push(`u.name != $${values.length}`)
  }
  // User.search: '%' + q + '%' with q's own % and _ left as wildcards, case-insensitive, over
  // name and fullname, and email too when the caller is a sysadmin.
  if (truthy(data.q)) {
    if (typeof data.q !== 'string') throw new Crash('TypeError: can only concatenate str to str')
    values.push(`%${data.q}%`)
    const like = `$${values.length}`
    conditions.push(`(u.name ILIKE ${like} OR u.fullname ILIKE ${like}${sysadmin ? ` OR u.email ILIKE ${like}` : ''})`)
  }
  if (truthy(data.email)) {
    values.push(text(data.email))
    conditions.push(`u.email = $${values.length}`)
  }
  const orderBy = userListOrder(data.order_by, version, allFields)
  conditions.push(`u.state != 'deleted'`)
  const result = await pool.query<UserRow>(
    `SELECT ${USER_COLUMNS(version)}, ${packageCount('false')}
     FROM "user" u WHERE ${conditions.join(' AND ')} ORDER BY ${orderBy}`,
    values,
  )
  if (!allFields) return result.rows.map((row) => row.name)
  return result.rows.map((row) => userDict(row, context, sysadmin || caller?.name === row.name))
}

async function userCreate(context: ActionContext): Promise<unknown> {
  const {caller, config, data, pool, version} = context
  const withApitoken = data.with_apitoken
  checkAccess(context, 'user_create', true, () => ({
    msg: `User ${caller?.name ?? ''} not authorized to create users via the API`,
    success: false,
  }))
  const errors: Record<string, string[]> = {}
  for (const key of ['email', 'name', 'password']) if (isEmpty(data[key])) errors[key] = ['Missing value']
  if (!errors.password && text(data.password).length < 8)
    errors.password = ['Your password must be 8 characters or longer']
  if (!errors.name && (await findUser(pool, text(data.name)))?.name === text(data.name))
    errors.name = ['That login name is not available.']
  if (Object.keys(errors).length > 0) throw validationError(errors)
  const row = (
    await pool.query<UserRow>(
      `INSERT INTO "user" AS u (id, name, password, fullname, email, apikey, created, about, sysadmin, state, activity_streams_email_notifications)
       VALUES ($2, $1, $3, $4, $5, $6, $7::timestamp, $8, false, 'active', false)
       RETURNING ${USER_COLUMNS(version)}, 0 AS number_created_packages`,
      [
        text(data.name),
        randomUUID(),
        `$pbkdf2-sha512$25000$${randomBytes(8).toString('base64url')}$emulated`,
        isEmpty(data.fullname) ? null : text(data.fullname),
        text(data.email),
        config.createDefaultApiKeys ? randomUUID() : null,
        localNowTimestamp(),
        isEmpty(data.about) ? null : text(data.about),
      ],
    )
  ).rows[0]!
  const user = userDict(row, context, true, true)
  // 2.11: with_apitoken (any true value) adds a token named "default", made by api_token_create
  // after the user is saved (so its errors, e.g. expire_api_token's, come after the user exists).
  if (version === '2.11' && truthy(withApitoken)) {
    const created = (await apiTokenCreate({...context, data: {user: row.name, name: 'default'}})) as {token: string}
    user.token = created.token
  }
  return user
}

async function userDelete(context: ActionContext): Promise<unknown> {
  const {data, pool} = context
  checkAccess(context, 'user_delete', false, () => ({success: false}))
  getOrBust(data, ['id'])
  const target = await findUser(pool, text(data.id))
  if (!target) throw notFound(`User "${text(data.id)}" was not found.`)
  await pool.query(`UPDATE "user" SET state = 'deleted' WHERE id = $1`, [target.id])
  return null
}

/** The actions the emulator implements, by name. Anything else is "Action name not known". */
export const ACTIONS: Readonly<Record<string, ActionDefinition>> = {
  api_token_create: {getable: false, run: apiTokenCreate},
  api_token_list: {getable: true, run: apiTokenList},
  api_token_revoke: {getable: false, run: apiTokenRevoke},
  get_site_user: {getable: true, run: getSiteUser},
  status_show: {getable: true, run: statusShow},
  user_create: {getable: false, run: userCreate},
  user_delete: {getable: false, run: userDelete},
  user_list: {getable: true, run: userList},
  user_show: {getable: true, run: userShow},
}
