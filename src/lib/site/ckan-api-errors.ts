import {EXIT_CODES, type ExitCode, MigrateError} from '../errors.js'

/**
 * `exitCode`: set only for a call the command's interrupt ended (exit 130 instead of 3).
 * `message`: the whole line, for a server that answered but is not CKAN's action API ("Cannot
 * reach" would send the admin to check the network instead of the URL).
 */
type InterruptOptions = {exitCode?: ExitCode; message?: string}

/**
 * The errors CkanApiClient throws. Nothing else leaves the client: an undici error may carry
 * the request (headers, body) and so possibly a secret, so it is translated here and dropped.
 * No message ever holds a request body, a header or a secret value.
 */

/** CKAN answered and refused (403, 404, 409, 400, or a 5xx after retries). Exit 4. */
export class CkanApiError extends MigrateError {
  readonly action: string
  /** CKAN's own words: "Access denied: …", "Not found: User not found", "name: Missing value". */
  readonly ckanMessage: string
  override name = 'CkanApiError'
  readonly status: number

  constructor(action: string, status: number, ckanMessage: string, suggestion?: string) {
    super(`CKAN rejected ${action} (HTTP ${status}): ${ckanMessage}`, {
      exitCode: EXIT_CODES.ckanRejected,
      suggestion: suggestion ?? suggestionFor(status),
    })
    this.action = action
    this.status = status
    this.ckanMessage = ckanMessage
  }
}

/** CKAN could not be reached: refused, DNS, timeout, a URL that is not an action API. Exit 3. */
export class CkanUnreachableError extends MigrateError {
  readonly action: string
  override name = 'CkanUnreachableError'

  constructor(action: string, reason: string, suggestion?: string, options: InterruptOptions = {}) {
    super(options.message ?? `Cannot reach CKAN for ${action}: ${reason}`, {
      exitCode: options.exitCode ?? EXIT_CODES.ckanUnreachable,
      suggestion: suggestion ?? 'Check --ckan-url, the network path and any proxy, then run the same command again.',
    })
    this.action = action
  }
}

/** TLS failed: an untrusted, self-signed, expired or wrong-host certificate. Exit 15. */
export class CkanTlsError extends MigrateError {
  readonly action: string
  override name = 'CkanTlsError'

  constructor(action: string, reason: string) {
    super(`TLS failed for ${action}: ${reason}`, {
      exitCode: EXIT_CODES.tlsFailure,
      suggestion:
        'If the site uses a private CA, pass --ca-cert FILE (its PEM certificate); otherwise fix the server certificate. TLS is never skipped.',
    })
    this.action = action
  }
}

/**
 * A write (api_token_create) was sent, but we do not know whether CKAN carried it out: a
 * timeout or a reset after sending, or a 5xx that may come from a proxy in front of a CKAN that
 * did commit. Never replay such a call blindly: reconcile (api_token_list) first.
 */
export class OutcomeUnknownError extends MigrateError {
  readonly action: string
  override name = 'OutcomeUnknownError'
  readonly reason: string
  /** The HTTP status when there was an answer (a 5xx); undefined for timeouts and resets. */
  readonly status: number | undefined

  constructor(action: string, reason: string, status?: number, options: InterruptOptions = {}) {
    super(`The outcome of ${action} is unknown: ${reason}`, {
      exitCode: options.exitCode ?? EXIT_CODES.ckanUnreachable,
      suggestion: 'Run the same command again with the same --out: it checks what CKAN did before trying again.',
    })
    this.action = action
    this.reason = reason
    this.status = status
  }
}

function suggestionFor(status: number): string {
  if (status === 403)
    return "Use a sysadmin's API token (--api-key-file or CKAN_MIGRATE_API_KEY); legacy keys stop working on CKAN 2.10."
  if (status === 404) return 'Check the user or item name; it is not known to this CKAN site.'
  if (status === 409) return 'CKAN refused the values sent; the message names the field.'
  if (status === 429) return 'CKAN (or its proxy) is rate-limiting; lower --concurrency and run the same command again.'
  if (status >= 500) return "CKAN had a server error; check CKAN's logs, then run the same command again."
  return 'Check --ckan-url and the CKAN version; the message quotes CKAN.'
}

/**
 * Turns the body of a CKAN error answer into one line: the `message` of the envelope's error,
 * the field errors of a validation error (`name: Missing value`), or a bare string (400s).
 * Undefined when the body is not CKAN's (an HTML page from a proxy or a wrong URL). `redact` runs on
 * the whole text before it is shortened, so a secret CKAN echoes can never survive half-cut.
 */
export function describeCkanError(
  data: unknown,
  redact: (text: string) => string = (text) => text,
): string | undefined {
  if (typeof data === 'string') {
    const text = redact(data.trim())
    // CKAN's bare 400 strings are JSON strings: parsed (a JSON type) or as text (any other type).
    if (/^"Bad request/.test(text)) return cutRequestEcho(redact(tryParseString(text) ?? text))
    if (text.startsWith('Bad request')) return cutRequestEcho(text)
    return undefined
  }
  if (typeof data !== 'object' || data === null) return undefined
  const {error, success} = data as {error?: unknown; success?: unknown}
  if (success !== false || typeof error !== 'object' || error === null) return undefined
  const fields = error as Record<string, unknown>
  if (typeof fields.message === 'string') return oneLine(redact(fields.message))
  const parts: string[] = []
  for (const [key, value] of Object.entries(fields)) {
    if (key === '__type' || key === 'data') continue
    parts.push(`${key}: ${Array.isArray(value) ? value.map(String).join(', ') : String(value)}`)
  }
  return parts.length > 0 ? oneLine(redact(parts.join('; '))) : oneLine(redact(String(fields.__type ?? 'error')))
}

/** CKAN's JSON errors echo the request ("JSON data extracted from the request: {…}"); drop the echo. */
function cutRequestEcho(text: string): string {
  const index = text.search(/ ?JSON data extracted from the request/)
  return oneLine(index === -1 ? text : text.slice(0, index))
}

function oneLine(text: string): string {
  const line = text.replaceAll(/\s+/g, ' ').trim()
  return line.length > 200 ? `${line.slice(0, 197)}...` : line
}

function tryParseString(text: string): string | undefined {
  try {
    const value = JSON.parse(text) as unknown
    return typeof value === 'string' ? value : undefined
  } catch {
    return undefined
  }
}
