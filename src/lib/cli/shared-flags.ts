import {Errors, Flags} from '@oclif/core'
import {isHeaderName} from '../site/token-header.js'

/** Flags shared by several commands, defined once so help text and env fallbacks agree everywhere. */
export const databaseUrlFlag = Flags.string({
  env: 'CKAN_MIGRATE_DATABASE_URL',
  helpGroup: 'SITE',
  summary: 'PostgreSQL URL of the CKAN database (default: sqlalchemy.url from --ckan-ini).',
})

export const ckanIniFlag = Flags.string({
  env: 'CKAN_INI',
  helpGroup: 'SITE',
  summary: "Path to the site's ckan.ini (use = config: chains are followed).",
})

const ckanUrlOptions = {
  env: 'CKAN_MIGRATE_CKAN_URL',
  helpGroup: 'SITE',
  summary: 'Base URL of the CKAN site, e.g. https://data.example.org.',
} as const
export const ckanUrlFlag = Flags.url(ckanUrlOptions)
/** --ckan-url for commands that cannot work without the action API. */
export const requiredCkanUrlFlag = Flags.url({...ckanUrlOptions, required: true})

export const apiKeyFileFlag = Flags.string({
  helpGroup: 'SITE',
  summary:
    "File holding a sysadmin's API token or (CKAN 2.9) legacy API key; or set CKAN_MIGRATE_API_KEY. Never pass the secret itself on the command line.",
})

export const caCertFlag = Flags.string({
  env: 'CKAN_MIGRATE_CA_CERT',
  helpGroup: 'SITE',
  summary: 'PEM file with the CA certificate(s) to trust for --ckan-url (for private CAs). TLS is always verified.',
})

const outOptions = {
  env: 'CKAN_MIGRATE_OUT',
  summary: 'Run folder (created 0700): token store, journal and reports. Reuse it to resume.',
} as const
export const outFlag = Flags.string(outOptions)
/** --out for commands that always work on a run folder. */
export const requiredOutFlag = Flags.string({...outOptions, required: true})

/** A bad flag value: oclif's usage error (exit 2), as for its own flag checks. */
function usage(message: string): Error {
  return new Errors.CLIError(message, {exit: 2})
}

/** Highest --concurrency / --max-concurrency. */
const MOST_CONCURRENT = 64

/** `auto` (the default: the limit adapts, see src/lib/ckan/adaptive-limit.ts) or a fixed 1–64. */
export const concurrencyFlag = Flags.custom<'auto' | number>({
  default: 'auto',
  helpGroup: 'LOAD',
  async parse(input) {
    const value = input.trim().toLowerCase()
    if (value === 'auto') return 'auto'
    if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > MOST_CONCURRENT)
      throw usage(`--concurrency must be auto or a whole number from 1 to ${MOST_CONCURRENT}, not ${input}`)
    return Number(value)
  },
  summary:
    'Parallel CKAN API calls: auto (default) finds what the site serves within --latency-budget; a number fixes it.',
})()

export const maxConcurrencyFlag = Flags.integer({
  default: 32,
  helpGroup: 'LOAD',
  max: MOST_CONCURRENT,
  min: 1,
  summary: 'Highest limit --concurrency auto may reach.',
})

export const latencyBudgetFlag = Flags.custom<number>({
  default: 2,
  helpGroup: 'LOAD',
  async parse(input) {
    const value = Number(input)
    if (!Number.isFinite(value) || value <= 1 || value > 100)
      throw usage(`--latency-budget must be a number above 1 (e.g. 2 or 1.5), not ${input}`)
    return value
  },
  summary:
    "With --concurrency auto: keep the site's answer time for others within this factor of its idle answer time.",
})()

/** The three load flags of every bulk command. */
export const loadFlags = {
  concurrency: concurrencyFlag,
  'latency-budget': latencyBudgetFlag,
  'max-concurrency': maxConcurrencyFlag,
}

/** The workflows' ConcurrencyOptions from the parsed load flags. */
export function concurrencyOptions(flags: {
  concurrency: 'auto' | number
  'latency-budget': number
  'max-concurrency': number
}): {concurrency: 'auto' | number; latencyBudget: number; maxConcurrency: number} {
  return {
    concurrency: flags.concurrency,
    latencyBudget: flags['latency-budget'],
    maxConcurrency: flags['max-concurrency'],
  }
}

export const dryRunFlag = Flags.boolean({default: false, summary: 'Check everything and show the plan; write nothing.'})

export const timeoutFlag = Flags.integer({
  default: 30,
  min: 1,
  summary:
    'Seconds one call to CKAN (or, for bundle --fetch-cert, its TLS handshake) may take, its retries and their waits included.',
})

/**
 * --header-name: the request header the credential (and each token, for verify) goes in. Default:
 * what the site's ckan.ini says its CKAN version reads, else the run folder's record, else a probe.
 */
export const headerNameFlag = Flags.custom<string>({
  helpGroup: 'SITE',
  async parse(input) {
    const value = input.trim()
    if (!isHeaderName(value))
      throw usage(
        `--header-name must be a bare HTTP header name such as Authorization or X-CKAN-API-Key, not ${JSON.stringify(value.slice(0, 60))}`,
      )
    return value
  },
  summary:
    "Header to send API credentials in (e.g. X-CKAN-API-Key). Default: what the site's ckan.ini says its CKAN version reads, else what this run used, else a probe.",
})()

/** --allow-other-url: work on the run's site at another URL than the run recorded (a staged upgrade's copy). */
export const allowOtherUrlFlag = Flags.boolean({
  default: false,
  helpGroup: 'SITE',
  summary:
    "Allow --ckan-url to differ from the run's URL (the same site upgraded or restored elsewhere): checked by the run's tokens and site user, and journaled.",
})
