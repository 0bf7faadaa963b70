import type {CkanVersion} from '../lib/site/ckan-version.js'

export type SandboxIniOptions = {
  /**
   * Write the `api_token.*` block (default true). False gives the ini of a site upgraded from
   * CKAN 2.8, which has no such lines: tokens are then signed with the fallback secret.
   */
  apiTokenLines?: boolean
  /** `beaker.session.secret` (and, in the 2.9 style, the literal JWT secrets). */
  beakerSecret: string
  /**
   * `ckan.auth.create_default_api_keys` (default false, as `ckan generate config` writes it). The
   * seeder follows the same setting (sandbox-site.ts passes it to both): with it false, users
   * created since the site's move to 2.9 hold no legacy key (ckan-site-seeder.ts).
   */
  createDefaultApiKeys?: boolean
  /** Enable the DataPusher plugin (default true). */
  datapusher?: boolean
  /** On 2.10/2.11: the token written to `ckan.datapusher.api_token` (required there by CKAN). */
  datapusherApiToken?: string
  databaseUrl: string
  /** Add ckanext-envvars as the last plugin. */
  envvars?: boolean
  /** Enable the expire_api_token plugin. */
  expireApiToken?: boolean
  /**
   * `[app:main]` settings that replace the line of the same key (or are added at the end of the
   * section); `null` removes the key, e.g. `{'beaker.session.secret': null}`.
   */
  settings?: Record<string, null | string>
  /** `api_token.nbytes` (default: 60 on 2.9, 32 on 2.10+, as each version generates). */
  nbytes?: number
  /** 2.11: `SECRET_KEY` (the 2.11 JWT fallback). */
  secretKey?: string
  siteId: string
  siteUrl: string
  version: CkanVersion
  /** Enable ckanext-xloader (default true). */
  xloader?: boolean
  /** On 2.10/2.11: the token written to `ckanext.xloader.api_token`. */
  xloaderApiToken?: string
}

/** The `ckan.plugins` list the sandbox's ini enables, in CKAN's order (envvars last). */
export function sandboxPlugins(
  options: Pick<SandboxIniOptions, 'datapusher' | 'envvars' | 'expireApiToken' | 'version' | 'xloader'>,
): string[] {
  const plugins =
    options.version === '2.9'
      ? ['stats', 'text_view', 'image_view', 'recline_view']
      : ['activity', 'text_view', 'image_view']
  if (options.xloader !== false || options.datapusher !== false) plugins.push('datastore')
  if (options.xloader !== false) plugins.push('xloader')
  if (options.datapusher !== false) plugins.push('datapusher')
  if (options.expireApiToken) plugins.push('expire_api_token')
  if (options.envvars) plugins.push('envvars')
  return plugins
}

/**
 * A ckan.ini in the shape `ckan generate config` writes for the version (see
 * ckan-reference/ckan-*-generated.ini): [DEFAULT], [app:main] with `use = egg:ckan`, `%(here)s`,
 * the session secret, the JWT block (2.9: literal `string:<secret>`, 2.10: interpolated
 * `%(beaker.session.secret)s`, 2.11: `%(SECRET_KEY)s`), and the logging sections. DataPusher and
 * XLoader are configured the 2.9 way (no api_token lines) on 2.9, with tokens on 2.10+.
 */
export function renderSandboxIni(options: SandboxIniOptions): string {
  const {version} = options
  const nbytes = options.nbytes ?? (version === '2.9' ? 60 : 32)
  const plugins = sandboxPlugins(options).join(' ')
  const escape = (value: string) => value.replaceAll('%', '%%')
  const jwtSecret =
    version === '2.9'
      ? `string:${escape(options.beakerSecret)}`
      : version === '2.10'
        ? 'string:%(beaker.session.secret)s'
        : 'string:%(SECRET_KEY)s'
  const lines: string[] = [
    '#',
    version === '2.9' ? '# CKAN - Pylons configuration' : '# CKAN configuration',
    '#',
    '# These are some of the configuration options available for your CKAN',
    "# instance. Check the documentation in 'doc/configuration.rst' or at the",
    '# following URL for a description of what they do and the full list of',
    '# available options:',
    '#',
    '# http://docs.ckan.org/en/latest/maintaining/configuration.html',
    '#',
    '# The %(here)s variable will be replaced with the parent directory of this file',
    '#',
    '# Written by `ckan-migrate sandbox`: a rehearsal site, not a production config.',
    '#',
    '',
    '[DEFAULT]',
    '',
    '# WARNING: *THIS SETTING MUST BE SET TO FALSE ON A PUBLIC ENVIRONMENT*',
    '# With debug mode enabled, a visitor to your site could execute malicious commands.',
    'debug = false',
    '',
    '[app:main]',
    'use = egg:ckan',
    '',
    '## Development settings',
    'ckan.devserver.host = localhost',
    'ckan.devserver.port = 5000',
    '',
    '## Session settings',
    ...(version === '2.11' ? [`SECRET_KEY = ${escape(options.secretKey ?? options.beakerSecret)}`] : []),
    ...(version === '2.9' ? [] : ['ckan.user.last_active_interval = 600']),
    'cache_dir = /tmp/%(ckan.site_id)s/',
    'beaker.session.key = ckan',
    '',
    '# This is the secret token that the beaker library uses to hash the cookie sent',
    '# to the client. `ckan generate config` generates a unique value for this each',
    '# time it generates a config file.',
    ...(version === '2.11' ? [] : [`beaker.session.secret = ${escape(options.beakerSecret)}`]),
    '',
    ...(version === '2.9'
      ? [
          '# repoze.who config',
          'who.config_file = %(here)s/who.ini',
          'who.log_level = warning',
          'who.log_file = %(cache_dir)s/who_log.ini',
          '',
        ]
      : []),
    '## Database Settings',
    `sqlalchemy.url = ${escape(options.databaseUrl)}`,
    '',
    `ckan.datastore.write_url = ${escape(options.databaseUrl)}`,
    `ckan.datastore.read_url = ${escape(options.databaseUrl)}`,
    '',
    '## Site Settings',
    '',
    `ckan.site_url = ${escape(options.siteUrl)}`,
    ...(version === '2.10'
      ? ['apikey_header_name = X-CKAN-API-Key']
      : version === '2.11'
        ? ['apitoken_header_name = Authorization']
        : []),
    '',
    '## Authorization Settings',
    '',
    'ckan.auth.anon_create_dataset = false',
    'ckan.auth.create_user_via_api = false',
    'ckan.auth.create_user_via_web = false',
    'ckan.auth.public_user_details = true',
    `ckan.auth.create_default_api_keys = ${options.createDefaultApiKeys ? 'true' : 'false'}`,
    '',
  ]
  if (options.apiTokenLines !== false) {
    lines.push(
      '## API Token Settings',
      `api_token.nbytes = ${nbytes}`,
      `api_token.jwt.encode.secret = ${jwtSecret}`,
      `api_token.jwt.decode.secret = ${jwtSecret}`,
      'api_token.jwt.algorithm = HS256',
      '',
      '## API Token: expire_api_token plugin',
      'expire_api_token.default_lifetime = 3600',
      '',
    )
  }
  lines.push(
    '## Search Settings',
    '',
    `ckan.site_id = ${escape(options.siteId)}`,
    '#solr_url = http://127.0.0.1:8983/solr',
    '',
    '## Redis Settings',
    '',
    '# URL to your Redis instance, including the database to be used.',
    'ckan.redis.url = redis://localhost:6379/0',
    '',
    '## Plugins Settings',
    '',
    '# Note: Add ``datastore`` to enable the CKAN DataStore',
    '#       Add ``datapusher`` to enable DataPusher',
    `ckan.plugins = ${plugins}`,
    '',
    '# Define which views should be created by default',
    '# (plugins must be loaded in ckan.plugins)',
    'ckan.views.default_views = image_view text_view',
    '',
    '## Front-End Settings',
    '',
    'ckan.site_title = CKAN',
    'ckan.site_description =',
    '',
    '## Internationalisation Settings',
    'ckan.locale_default = en',
    '',
    '## Storage Settings',
    '',
    'ckan.storage_path = %(here)s/storage',
    '',
  )
  if (options.datapusher !== false) {
    lines.push(
      '## Datapusher settings',
      '',
      'ckan.datapusher.formats = csv xls xlsx tsv application/csv application/vnd.ms-excel',
      'ckan.datapusher.url = http://127.0.0.1:8800/',
      'ckan.datapusher.assume_task_stale_after = 3600',
      ...(version === '2.9' ? [] : [`ckan.datapusher.api_token = ${escape(options.datapusherApiToken ?? '')}`]),
      '',
    )
  }
  if (options.xloader !== false) {
    lines.push(
      '## XLoader settings',
      `ckanext.xloader.jobs_db.uri = ${escape(options.databaseUrl)}`,
      'ckanext.xloader.formats = csv application/csv xls application/vnd.ms-excel',
      'ckanext.xloader.max_content_length = 1000000000',
      ...(version === '2.9' ? [] : [`ckanext.xloader.api_token = ${escape(options.xloaderApiToken ?? '')}`]),
      '',
    )
  }
  lines.push(
    '## Activity Streams Settings',
    '',
    'ckan.hide_activity_from_users = %(ckan.site_id)s',
    '',
    '## Background Job Settings',
    'ckan.jobs.timeout = 180',
    '',
  )
  const added: string[] = []
  for (const [key, value] of Object.entries(options.settings ?? {})) {
    const index = lines.findIndex((line) => line.startsWith(`${key} =`))
    if (index === -1) {
      if (value !== null) added.push(`${key} = ${value}`)
    } else if (value === null) lines.splice(index, 1)
    else lines[index] = `${key} = ${value}`
  }
  if (added.length > 0) lines.push('## Sandbox settings', ...added, '')
  lines.push(
    '## Logging configuration',
    '[loggers]',
    'keys = root, ckan, ckanext, werkzeug',
    '',
    '[handlers]',
    'keys = console',
    '',
    '[formatters]',
    'keys = generic',
    '',
    '[logger_root]',
    'level = WARNING',
    'handlers = console',
    '',
    '[logger_werkzeug]',
    'level = WARNING',
    'handlers = console',
    'qualname = werkzeug',
    'propagate = 0',
    '',
    '[logger_ckan]',
    'level = INFO',
    'handlers = console',
    'qualname = ckan',
    'propagate = 0',
    '',
    '[logger_ckanext]',
    'level = DEBUG',
    'handlers = console',
    'qualname = ckanext',
    'propagate = 0',
    '',
    '[handler_console]',
    'class = StreamHandler',
    'args = (sys.stderr,)',
    'level = NOTSET',
    'formatter = generic',
    '',
    '[formatter_generic]',
    'format = %(asctime)s %(levelname)-5.5s [%(name)s] %(message)s',
    '',
  )
  return lines.join('\n')
}
