import {Flags} from '@oclif/core'

import {MigrateCommand} from '../lib/cli/migrate-command.js'
import {
  apiKeyFileFlag,
  caCertFlag,
  ckanIniFlag,
  ckanUrlFlag,
  dryRunFlag,
  headerNameFlag,
  outFlag,
  timeoutFlag,
} from '../lib/cli/shared-flags.js'
import {type RewriteConfigResult, rewriteServiceConfigs} from '../lib/workflows/rewrite-config.js'

export default class RewriteConfig extends MigrateCommand<RewriteConfigResult> {
  static override description = `Only plugins enabled in ckan.plugins (or named with --service) get a token: xloader (ckanext.xloader.api_token), datapusher (ckan.datapusher.api_token), datapusher_plus (ckanext.datapusher_plus.api_token), validation (ckanext.validation.pass_auth_header_value). Tokens are created for the site user (or --service-user) and stored in the run folder, so revoke --out can undo them and a rerun reuses them. api_token.jwt.encode/decode.secret are pinned to the literal secret CKAN signs with today, so tokens survive CKAN 2.11. Only the lines that change are touched; each changed file gets a backup beside it and is replaced atomically. --dry-run shows a diff with secrets redacted.`
  static override examples = [
    '<%= config.bin %> <%= command.id %> --ckan-ini /etc/ckan/default/ckan.ini --ckan-url https://data.example.org --api-key-file ~/.ckan-sysadmin-token --out ./run --dry-run',
    '<%= config.bin %> <%= command.id %> --ckan-ini /etc/ckan/default/ckan.ini --also /mnt/worker1/ckan.ini --ckan-url https://data.example.org --api-key-file ~/.ckan-sysadmin-token --out ./run',
    '<%= config.bin %> <%= command.id %> --env-file ./ckan-docker/.env --token-file xloader=./xloader.token --fix-header',
  ]
  static override flags = {
    also: Flags.string({
      multiple: true,
      summary: "Another node's copy of ckan.ini (web or worker) to give the same change; repeatable.",
    }),
    'api-key-file': apiKeyFileFlag,
    'ca-cert': caCertFlag,
    'chain-target': Flags.string({
      default: 'defining',
      options: ['defining', 'top'],
      summary:
        'With use = config: chains, write a key in the file that defines it (defining) or override it in the top file (top).',
    }),
    'ckan-ini': ckanIniFlag,
    'ckan-url': ckanUrlFlag,
    'dry-run': dryRunFlag,
    'header-name': headerNameFlag,
    'env-file': Flags.string({
      multiple: true,
      summary: 'Docker env file to set ckanext-envvars variables in (CKANEXT__XLOADER__API_TOKEN, …); repeatable.',
    }),
    'fix-header': Flags.boolean({
      default: false,
      summary: 'Set apitoken_header_name = Authorization (what CKAN 2.11 and XLoader use).',
    }),
    out: outFlag,
    service: Flags.string({
      multiple: true,
      summary:
        'Configure this service even if its plugin is not in ckan.plugins: xloader, datapusher, datapusher_plus, validation.',
    }),
    'service-user': Flags.string({
      summary: 'CKAN user the service tokens belong to (default: the site user, ckan.site_id).',
    }),
    timeout: timeoutFlag,
    'token-file': Flags.string({
      multiple: true,
      summary: 'Use the token in FILE instead of creating one: FILE for every service, or SERVICE=FILE; repeatable.',
    }),
    'token-lifetime-days': Flags.integer({
      default: 365,
      min: 1,
      summary: 'Lifetime of created tokens when the expire_api_token plugin is enabled.',
    }),
  }
  static override summary =
    'Give each service (XLoader, DataPusher, …) its own API token in ckan.ini and env files, touching nothing else.'

  async run(): Promise<RewriteConfigResult> {
    const {flags} = await this.parse(RewriteConfig)
    const result = await rewriteServiceConfigs({
      alsoPaths: flags.also ?? [],
      ...(flags['ckan-url']
        ? {
            api: {
              apiKeyFile: flags['api-key-file'],
              caCertPath: flags['ca-cert'],
              ckanUrl: flags['ckan-url'],
              headerName: flags['header-name'],
              timeoutMs: flags.timeout * 1000,
            },
          }
        : {}),
      chainTarget: flags['chain-target'] as 'defining' | 'top',
      ...(flags['ckan-ini'] ? {ckanIniPath: flags['ckan-ini']} : {}),
      dryRun: flags['dry-run'],
      envFilePaths: flags['env-file'] ?? [],
      fixHeader: flags['fix-header'],
      ...(flags.out ? {out: flags.out} : {}),
      services: flags.service ?? [],
      ...(flags['service-user'] ? {serviceUser: flags['service-user']} : {}),
      tokenFiles: flags['token-file'] ?? [],
      tokenLifetimeDays: flags['token-lifetime-days'],
      onStep: this.steps(),
    })
    this.render(result)
    return result
  }

  private render(result: RewriteConfigResult): void {
    for (const service of result.services) {
      const token = service.tokenFingerprint ? ` token ${service.tokenFingerprint}` : ''
      this.log(
        `${service.service}: ${service.configKey} ← ${service.tokenSource}${token}${service.user ? ` (user ${service.user})` : ''}`,
      )
    }
    if (result.secretPinning)
      this.log(`JWT secret pinned: ${result.secretPinning.keys.join(', ')} (from ${result.secretPinning.from})`)
    for (const file of result.files) {
      if (result.dryRun && file.diff) this.log(file.diff.trimEnd())
      const what = file.changes.map((change) => `${change.setting} (${change.action}, line ${change.line})`).join(', ')
      if (file.status === 'unchanged') this.log(`${file.path}: nothing to change`)
      else
        this.log(
          `${file.path}: ${file.status === 'changed' ? 'changed' : 'would change'} ${what}${file.backupPath ? `; backup ${file.backupPath}` : ''}`,
        )
    }
    if (result.nothingToChange) this.log('Nothing to change: the files already hold these settings.')
    else if (result.dryRun) this.log('Dry run: nothing was written and no token was created.')
    else
      this.log(
        'Restart every CKAN web and worker process that reads these files (see docs/commands/rewrite-config.md, Runbook).',
      )
  }
}
