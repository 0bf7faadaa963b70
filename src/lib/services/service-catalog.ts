import {EXIT_CODES, MigrateError} from '../errors.js'

/**
 * Which service needs which ckan.ini key to hold its own API token (ckan-ecosystem §2,
 * ckan-facts §6). A service is configured only when one of its plugins is in `ckan.plugins`, or
 * when it is named with `--service`.
 */
export type ServiceDefinition = {
  /** The ckan.ini key that must hold the token. */
  configKey: string
  /** Why it matters, for plans and docs. */
  reason: string
  /** `--service` name; also part of the token name. */
  service: string
  /** Plugin names in `ckan.plugins` that mean the service is in use. */
  plugins: readonly string[]
}

export const SERVICE_CATALOG: readonly ServiceDefinition[] = [
  {
    configKey: 'ckan.datapusher.api_token',
    plugins: ['datapusher'],
    reason: 'CKAN 2.10+ refuses to start the datapusher plugin without it',
    service: 'datapusher',
  },
  {
    configKey: 'ckanext.datapusher_plus.api_token',
    plugins: ['datapusher_plus'],
    reason: 'datapusher-plus 1.x needs a token for its service account',
    service: 'datapusher_plus',
  },
  {
    configKey: 'ckanext.validation.pass_auth_header_value',
    plugins: ['validation'],
    reason: "ckanext-validation sends it to read private resources; its default is the site user's legacy key",
    service: 'validation',
  },
  {
    configKey: 'ckanext.xloader.api_token',
    plugins: ['xloader'],
    reason: 'XLoader 2.1+ has no fallback, and legacy keys stop working on CKAN 2.10',
    service: 'xloader',
  },
]

/** The services to configure: those named, else those whose plugin is enabled. */
export function selectServices(options: {named: readonly string[]; plugins: readonly string[]}): ServiceDefinition[] {
  if (options.named.length > 0) {
    const unknown = options.named.filter(
      (name) => !SERVICE_CATALOG.some((service) => service.service === normaliseServiceName(name)),
    )
    if (unknown.length > 0) {
      throw new MigrateError(`Unknown service: ${unknown.join(', ')}`, {
        exitCode: EXIT_CODES.badInput,
        suggestion: `Name one of: ${SERVICE_CATALOG.map((service) => service.service).join(', ')}.`,
      })
    }
    const wanted = new Set(options.named.map((name) => normaliseServiceName(name)))
    return SERVICE_CATALOG.filter((service) => wanted.has(service.service))
  }
  return SERVICE_CATALOG.filter((service) => service.plugins.some((plugin) => options.plugins.includes(plugin)))
}

/** Accepts `datapusher-plus` for `datapusher_plus`. */
export function normaliseServiceName(name: string): string {
  return name.trim().toLowerCase().replaceAll('-', '_')
}
