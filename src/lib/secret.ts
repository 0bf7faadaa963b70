import {createHash} from 'node:crypto'
import {inspect} from 'node:util'

const REDACTED = '[redacted]'

/**
 * A value that must never be printed: a legacy API key, an API token, a bundle password, a JWT
 * signing secret. Every way of turning it into text shows `[redacted]`; only `reveal()` gives the
 * value, so a grep for `reveal()` finds every place a secret is used.
 */
export class Secret {
  readonly #value: string

  constructor(value: string) {
    this.#value = value
  }

  /** A short, non-reversible identifier: the first 8 hex digits of the SHA-256 of the value. */
  fingerprint(): string {
    return fingerprintOf(this.#value)
  }

  [inspect.custom](): string {
    return REDACTED
  }

  reveal(): string {
    return this.#value
  }

  toJSON(): string {
    return REDACTED
  }

  toString(): string {
    return REDACTED
  }

  valueOf(): string {
    return REDACTED
  }
}

/** The first 8 hex digits of the SHA-256 of a value: safe to show for keys, tokens and jtis. */
export function fingerprintOf(value: string): string {
  return createHash('sha256').update(value, 'utf8').digest('hex').slice(0, 8)
}
