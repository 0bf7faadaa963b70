import {createHash} from 'node:crypto'

import {EXIT_CODES, MigrateError} from '../lib/errors.js'

/**
 * Fault injection for the CKAN emulator: what a flaky proxy or an overloaded CKAN does to a
 * migration. Rates are probabilities per request (0–1) and are drawn, in this order, from one
 * seeded PRNG so a run with the same seed and the same request order misbehaves the same way.
 */
export type FaultSettings = {
  /** Actions the faults apply to (default: the token actions). Latency applies to them too. */
  actions?: string[]
  /** The action runs (a token is created) and the connection is never answered. */
  hangAfterCommit?: number
  /** Jitter added to `latencyMs`: uniform in [0, jitterMs). */
  jitterMs?: number
  /** Fixed delay before each answer, in milliseconds. */
  latencyMs?: number
  /** The socket is destroyed after the action ran (a token is created, the client sees a reset). */
  resetAfterWrite?: number
  /** The socket is destroyed before anything runs. */
  resetBeforeWrite?: number
  /** `Retry-After` seconds sent with 429 answers (default 1). */
  retryAfterSeconds?: number
  /** Any text or number; the same seed gives the same faults. Default 'ckan-migrate'. */
  seed?: number | string
  /** 429 Too Many Requests (a rate-limiting proxy), before the action runs. */
  status429?: number
  /** 500 Internal Server Error (CKAN's own envelope), before the action runs. */
  status500?: number
  /** 502 Bad Gateway (the proxy's HTML page), before the action runs. */
  status502?: number
  /** 503 Service Unavailable (the proxy's HTML page), before the action runs. */
  status503?: number
}

export type FaultKind =
  | 'hang-after-commit'
  | 'reset-after-write'
  | 'reset-before-write'
  | 'status-429'
  | 'status-500'
  | 'status-502'
  | 'status-503'

export type FaultDecision = {delayMs: number; fault: FaultKind | undefined}

export const DEFAULT_FAULT_ACTIONS: readonly string[] = ['api_token_create', 'api_token_list', 'api_token_revoke']

const RATE_KEYS = [
  'hangAfterCommit',
  'resetAfterWrite',
  'resetBeforeWrite',
  'status429',
  'status500',
  'status502',
  'status503',
] as const
const NUMBER_KEYS = ['jitterMs', 'latencyMs', 'retryAfterSeconds'] as const

// The order in which one uniform draw is split between the faults.
const ORDER: ReadonlyArray<[(typeof RATE_KEYS)[number], FaultKind]> = [
  ['status500', 'status-500'],
  ['status502', 'status-502'],
  ['status503', 'status-503'],
  ['status429', 'status-429'],
  ['resetBeforeWrite', 'reset-before-write'],
  ['resetAfterWrite', 'reset-after-write'],
  ['hangAfterCommit', 'hang-after-commit'],
]

/** A seeded fault plan: `decide(action)` says what to do to one request. */
export class FaultPlan {
  readonly settings: Readonly<FaultSettings>
  #next: () => number

  constructor(settings: FaultSettings = {}) {
    this.settings = validateFaultSettings(settings)
    this.#next = mulberry32(seedNumber(settings.seed ?? 'ckan-migrate'))
  }

  /** True when no fault and no latency is configured. */
  get inactive(): boolean {
    return RATE_KEYS.every((key) => !this.settings[key]) && !this.settings.latencyMs && !this.settings.jitterMs
  }

  decide(action: string): FaultDecision {
    const actions = this.settings.actions ?? DEFAULT_FAULT_ACTIONS
    if (this.inactive || !actions.includes(action)) return {delayMs: 0, fault: undefined}
    const jitter = this.settings.jitterMs ? this.#next() * this.settings.jitterMs : 0
    const delayMs = (this.settings.latencyMs ?? 0) + jitter
    const draw = this.#next()
    let threshold = 0
    for (const [key, kind] of ORDER) {
      threshold += this.settings[key] ?? 0
      if (draw < threshold) return {delayMs, fault: kind}
    }
    return {delayMs, fault: undefined}
  }
}

/** Checks rates (0–1, summing to at most 1) and durations (≥ 0); a MigrateError (exit 7) otherwise. */
export function validateFaultSettings(settings: FaultSettings): FaultSettings {
  const bad = (message: string) =>
    new MigrateError(`Fault settings: ${message}`, {
      exitCode: EXIT_CODES.badInput,
      suggestion:
        'Rates are numbers from 0 to 1 (summing to at most 1), durations milliseconds ≥ 0; see docs/emulator.md.',
    })
  let total = 0
  for (const [key, value] of Object.entries(settings)) {
    if (key === 'seed') continue
    if (key === 'actions') {
      if (!Array.isArray(value) || value.some((item) => typeof item !== 'string'))
        throw bad('actions must be a list of action names')
      continue
    }
    if (!(RATE_KEYS as readonly string[]).includes(key) && !(NUMBER_KEYS as readonly string[]).includes(key))
      throw bad(`unknown setting "${key}"`)
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) throw bad(`${key} must be a number ≥ 0`)
    if ((RATE_KEYS as readonly string[]).includes(key)) {
      if (value > 1) throw bad(`${key} is a rate and must be at most 1`)
      total += value
    }
  }
  if (total > 1 + 1e-9) throw bad('the rates add up to more than 1')
  return {...settings}
}

/**
 * Parses `--faults`: a JSON object, or `key=value,key=value` (numbers; `actions` separated by
 * `+`, e.g. `actions=api_token_create+api_token_revoke`).
 */
export function parseFaultSettings(text: string): FaultSettings {
  const trimmed = text.trim()
  if (trimmed === '') return {}
  if (trimmed.startsWith('{')) {
    let parsed: unknown
    try {
      parsed = JSON.parse(trimmed)
    } catch {
      throw new MigrateError('Fault settings are not valid JSON', {
        exitCode: EXIT_CODES.badInput,
        suggestion: 'Pass --faults as a JSON object or as key=value,key=value (see docs/emulator.md).',
      })
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
      throw new MigrateError('Fault settings must be a JSON object', {
        exitCode: EXIT_CODES.badInput,
        suggestion: 'Pass --faults \'{"status503": 0.1}\'.',
      })
    return validateFaultSettings(parsed as FaultSettings)
  }
  const settings: Record<string, unknown> = {}
  for (const pair of trimmed.split(',')) {
    const at = pair.indexOf('=')
    if (at <= 0) {
      throw new MigrateError(`Fault setting "${pair.trim()}" is not key=value`, {
        exitCode: EXIT_CODES.badInput,
        suggestion: 'Write --faults status503=0.1,latencyMs=20 (see docs/emulator.md).',
      })
    }
    const key = pair.slice(0, at).trim()
    const value = pair.slice(at + 1).trim()
    if (key === 'actions') settings.actions = value.split('+').filter(Boolean)
    else if (key === 'seed') settings.seed = value
    else settings[key] = value === '' ? Number.NaN : Number(value)
  }
  return validateFaultSettings(settings as FaultSettings)
}

function seedNumber(seed: number | string): number {
  return createHash('sha256').update(String(seed)).digest().readUInt32LE(0)
}

/** A small, fast, seedable PRNG (mulberry32): uniform numbers in [0, 1). */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d_2b_79_f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296
  }
}
