import {Flags} from '@oclif/core'

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

export const concurrencyFlag = Flags.integer({default: 4, max: 64, min: 1, summary: 'Parallel CKAN API calls.'})

export const dryRunFlag = Flags.boolean({default: false, summary: 'Check everything and show the plan; write nothing.'})

export const timeoutFlag = Flags.integer({
  default: 30,
  min: 1,
  summary: 'Seconds to wait for one CKAN API answer.',
})
