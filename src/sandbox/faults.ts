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
  /**
   * Capacity model: requests beyond `workers` wait in a backlog of this many (default 100, uWSGI's
   * `listen`); past it the emulator answers `overflowStatus` at once, as nginx does when the
   * upstream's queue is full.
   */
  backlog?: number
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
  /** Status of a request refused because the backlog is full: 502 (default) or 503. */
  overflowStatus?: number
  /** `Retry-After` seconds sent with 429 answers (default 1). */
  retryAfterSeconds?: number
  /** Any text or number; the same seed gives the same faults. Default 'ckan-migrate'. */
  seed?: number | string
  /** Uniform [0, serviceJitterMs) added to each request's service time. */
  serviceJitterMs?: number
  /**
   * Milliseconds a request keeps its worker busy before its action runs (the action's own
   * database work comes on top): one number for every action, or per action with `*` for the
   * others (`{"api_token_create": 12, "*": 4}`). With `workers`, throughput is bounded by
   * workers ÷ service time, as on a real server.
   */
  serviceMs?: number | Record<string, number>
  /** 429 Too Many Requests (a rate-limiting proxy), before the action runs. */
  status429?: number
  /** 500 Internal Server Error (CKAN's own envelope), before the action runs. */
  status500?: number
  /** 502 Bad Gateway (the proxy's HTML page), before the action runs. */
  status502?: number
  /** 503 Service Unavailable (the proxy's HTML page), before the action runs. */
  status503?: number
  /**
   * Requests served at once (gunicorn/uWSGI sync workers); default unlimited. The others wait
   * in the backlog, first come first served.
   */
  workers?: number
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
const NUMBER_KEYS = ['jitterMs', 'latencyMs', 'retryAfterSeconds', 'serviceJitterMs'] as const
const INTEGER_KEYS = ['backlog', 'overflowStatus', 'workers'] as const
/** uWSGI's default listen queue (the backlog) when `workers` is set without `backlog`. */
export const DEFAULT_BACKLOG = 100

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
  /** Service-time jitter has a PRNG of its own, so adding it leaves a seed's faults as they were. */
  #nextService: () => number

  constructor(settings: FaultSettings = {}) {
    this.settings = validateFaultSettings(settings)
    const seed = seedNumber(settings.seed ?? 'ckan-migrate')
    this.#next = mulberry32(seed)
    this.#nextService = mulberry32(seed ^ 0x5e_41_1c_e5)
  }

  /** The backlog bound when `workers` is set. */
  get backlog(): number {
    return this.settings.backlog ?? DEFAULT_BACKLOG
  }

  /** How long one request of `action` keeps its worker busy before the action runs. */
  serviceTime(action: string): number {
    const {serviceJitterMs, serviceMs} = this.settings
    const base = typeof serviceMs === 'number' ? serviceMs : (serviceMs?.[action] ?? serviceMs?.['*'] ?? 0)
    if (base === 0 && !serviceJitterMs) return 0
    return base + (serviceJitterMs ? this.#nextService() * serviceJitterMs : 0)
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
    if (key === 'serviceMs') {
      const values = typeof value === 'object' && value !== null ? Object.values(value as object) : [value]
      if (Array.isArray(value) || values.some((item) => typeof item !== 'number' || !Number.isFinite(item) || item < 0))
        throw bad('serviceMs must be a number ≥ 0 or an object of action: number ≥ 0')
      continue
    }
    if ((INTEGER_KEYS as readonly string[]).includes(key)) {
      if (typeof value !== 'number' || !Number.isInteger(value) || value < (key === 'backlog' ? 0 : 1))
        throw bad(`${key} must be a whole number ≥ ${key === 'backlog' ? 0 : 1}`)
      if (key === 'overflowStatus' && value !== 502 && value !== 503) throw bad('overflowStatus must be 502 or 503')
      continue
    }
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
 * `+`, e.g. `actions=api_token_create+api_token_revoke`; per-action `serviceMs` as
 * `serviceMs=api_token_create:12+*:4`).
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
    else if (key === 'serviceMs' && value.includes(':'))
      settings.serviceMs = Object.fromEntries(
        value.split('+').map((item) => {
          const [action = '', ms = ''] = item.split(':')
          return [action.trim(), ms.trim() === '' ? Number.NaN : Number(ms)]
        }),
      )
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
