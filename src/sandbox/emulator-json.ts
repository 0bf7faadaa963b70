/**
 * Output helpers that make the emulator's bytes look like CKAN's: simplejson's default
 * formatting (", " and ": " separators, non-ASCII escaped), Python's isoformat() for naive
 * timestamps, and Python's repr() for the few error messages that print request data.
 */

const NON_PRINTABLE_ASCII = /[\u007f-\uffff]/g

function escapeString(text: string): string {
  return JSON.stringify(text).replaceAll(
    NON_PRINTABLE_ASCII,
    (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`,
  )
}

/** `json.dumps(value)` with Python's defaults: `{"a": 1, "b": [1, 2]}`, ensure_ascii. */
export function pythonJson(value: unknown): string {
  if (value === null || value === undefined) return 'null'
  if (typeof value === 'string') return escapeString(value)
  if (typeof value === 'number' || typeof value === 'boolean') return JSON.stringify(value)
  if (Array.isArray(value)) return `[${value.map((item) => pythonJson(item)).join(', ')}]`
  if (typeof value === 'object') {
    const parts: string[] = []
    for (const [key, item] of Object.entries(value as Record<string, unknown>)) {
      if (item === undefined) continue
      parts.push(`${escapeString(key)}: ${pythonJson(item)}`)
    }
    return `{${parts.join(', ')}}`
  }
  return 'null'
}

/** Python's repr() of decoded JSON, for "Request data JSON decoded to %r" messages. */
export function pythonRepr(value: unknown): string {
  if (value === null || value === undefined) return 'None'
  if (value === true) return 'True'
  if (value === false) return 'False'
  if (typeof value === 'number') return String(value)
  if (typeof value === 'string') return `'${value.replaceAll('\\', '\\\\').replaceAll("'", "\\'")}'`
  if (Array.isArray(value)) return `[${value.map((item) => pythonRepr(item)).join(', ')}]`
  return `{${Object.entries(value as Record<string, unknown>)
    .map(([key, item]) => `${pythonRepr(key)}: ${pythonRepr(item)}`)
    .join(', ')}}`
}

/**
 * A PostgreSQL `timestamp without time zone` as text ('2026-11-22 03:56:49.6256') in Python's
 * isoformat(): 'T' separator, microseconds always six digits, omitted when zero.
 */
export function isoformat(timestamp: null | string | undefined): null | string {
  if (timestamp === null || timestamp === undefined) return null
  const [date, time = '00:00:00'] = timestamp.split(' ')
  const [whole, fraction] = time.split('.')
  if (!fraction || /^0+$/.test(fraction)) return `${date}T${whole}`
  return `${date}T${whole}.${fraction.padEnd(6, '0').slice(0, 6)}`
}

const origin = performance.timeOrigin

/** The current UTC time as a naive timestamp with microseconds ('2026-11-22 03:56:49.625661'), as datetime.utcnow() gives. */
export function utcNowTimestamp(): {seconds: number; text: string} {
  return utcTimestampAfter(0)
}

/**
 * datetime.utcnow() + timedelta(seconds=…) as a naive timestamp with microseconds, and its whole
 * seconds since the epoch (what PyJWT writes for a datetime claim).
 */
export function utcTimestampAfter(seconds: number): {seconds: number; text: string} {
  const micros = Math.floor((origin + performance.now()) * 1000) + Math.round(seconds * 1_000_000)
  const millis = Math.floor(micros / 1000)
  const text = `${new Date(millis).toISOString().slice(0, 19).replace('T', ' ')}.${String(micros % 1_000_000).padStart(6, '0')}`
  return {seconds: Math.floor(millis / 1000), text}
}

/** The server's local time as a naive timestamp, as datetime.now() gives (user.created). */
export function localNowTimestamp(): string {
  const now = new Date()
  const pad = (value: number, width = 2) => String(value).padStart(width, '0')
  return `${now.getFullYear()}-${pad(now.getMonth() + 1)}-${pad(now.getDate())} ${pad(now.getHours())}:${pad(now.getMinutes())}:${pad(now.getSeconds())}.${pad(now.getMilliseconds(), 3)}000`
}
