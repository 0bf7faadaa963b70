import {setTimeout as sleep} from 'node:timers/promises'

/**
 * Spaces message starts evenly: at most `perMinute` per minute across every worker, so a burst
 * never trips the mail server's (or the provider's) limits.
 */
export class RateLimiter {
  readonly #intervalMs: number
  #next = 0

  constructor(perMinute: number) {
    this.#intervalMs = 60_000 / perMinute
  }

  /** Waits for the next free slot; false when `signal` fired first (nothing should start then). */
  async wait(signal?: AbortSignal): Promise<boolean> {
    const now = Date.now()
    const slot = Math.max(now, this.#next)
    this.#next = slot + this.#intervalMs
    return pause(slot - now, signal)
  }
}

/** An abortable pause; false when `signal` fired. */
export async function pause(ms: number, signal?: AbortSignal): Promise<boolean> {
  if (signal?.aborted) return false
  if (ms <= 0) return true
  try {
    await sleep(ms, undefined, {signal})
    return true
  } catch {
    return false
  }
}
