import {Flags} from '@oclif/core'

import {readCkanIni} from '../lib/site/ckan-ini.js'
import {chooseDatabaseUrl} from '../lib/site/ckan-settings.js'
import {MigrateCommand} from '../lib/cli/migrate-command.js'
import {ckanIniFlag, databaseUrlFlag, dryRunFlag} from '../lib/cli/shared-flags.js'
import {EXIT_CODES, MigrateError} from '../lib/errors.js'
import {purgeKeys, type PurgeKeysResult} from '../lib/workflows/purge-keys.js'

export default class PurgeKeys extends MigrateCommand<PurgeKeysResult> {
  static override description = `CKAN never removes legacy keys: no migration drops user.apikey and 2.10/2.11 still return it from user_show, so the keys sit in the database and every backup until someone clears them. This command sets user.apikey to NULL for users whose token from the run (--out) verified, or for every user with --all, in one transaction, and writes a CSV of affected users (key fingerprints, never keys) into the run folder. It refuses without a fresh backup made by ckan-migrate backup (--backup FILE) or an explicit --no-backup, and on a 2.9 site without --confirm-2.9. On 2.9 it keeps the site user's key while DataPusher or XLoader may use it, unless --include-site-user.`
  static override examples = [
    '<%= config.bin %> <%= command.id %> --ckan-ini /etc/ckan/default/ckan.ini --out ./run --backup /var/backups/ckan/ckan-db_default_20261122T020000Z_8FD98B2183B2C228.pgc.gpg --dry-run',
    '<%= config.bin %> <%= command.id %> --ckan-ini /etc/ckan/default/ckan.ini --out ./run --backup /var/backups/ckan/ckan-db_default_20261122T020000Z_8FD98B2183B2C228.pgc.gpg',
    '<%= config.bin %> <%= command.id %> --database-url postgresql://ckan@db/ckan --out ./run --all --no-backup',
  ]
  static override flags = {
    all: Flags.boolean({default: false, summary: "Clear every user's key, not only those whose token verified."}),
    backup: Flags.string({
      exclusive: ['no-backup'],
      summary: 'A backup made by ckan-migrate backup (its FILE.json sidecar is checked: age, SHA-256, same database).',
    }),
    'ckan-ini': ckanIniFlag,
    'confirm-2.9': Flags.boolean({
      default: false,
      summary: 'The site still runs CKAN 2.9, where keys still work: clear them anyway.',
    }),
    'database-url': databaseUrlFlag,
    'dry-run': dryRunFlag,
    'include-site-user': Flags.boolean({
      default: false,
      summary: "Also clear the site user's key on 2.9 (DataPusher / XLoader before 2.1 use it).",
    }),
    'max-backup-age': Flags.integer({default: 24, min: 1, summary: 'Hours a --backup may be old.'}),
    'no-backup': Flags.boolean({
      default: false,
      exclusive: ['backup'],
      summary: 'Go on without a backup (say so explicitly).',
    }),
    out: Flags.string({
      env: 'CKAN_MIGRATE_OUT',
      required: true,
      summary:
        'The run folder of issue-tokens and verify: its journal says whose token verified; the CSV and journal entries go there.',
    }),
  }
  static override summary = 'Clear legacy API keys (user.apikey) once the tokens that replace them work.'

  async run(): Promise<PurgeKeysResult> {
    const {flags} = await this.parse(PurgeKeys)
    if (!flags.backup && !flags['no-backup']) {
      throw new MigrateError(
        'purge-keys needs --backup FILE (made by ckan-migrate backup) or an explicit --no-backup',
        {
          exitCode: EXIT_CODES.badInput,
          suggestion: 'Run ckan-migrate backup first and pass the file it wrote with --backup.',
        },
      )
    }
    const ini = flags['ckan-ini'] ? await readCkanIni(flags['ckan-ini']) : undefined
    const {url} = chooseDatabaseUrl({databaseUrl: flags['database-url'], ini})
    const result = await purgeKeys({
      all: flags.all,
      backup: flags.backup ? {file: flags.backup, maxAgeHours: flags['max-backup-age']} : 'none',
      confirm29: flags['confirm-2.9'],
      databaseUrl: url,
      dryRun: flags['dry-run'],
      includeSiteUser: flags['include-site-user'],
      ini,
      out: flags.out,
    })
    for (const warning of result.warnings) this.warn(warning)
    const skipped = `skipped: ${result.skipped.siteUser} site user, ${result.skipped.alreadyWithoutKey} already without a key, ${result.skipped.notInDatabase} not in this database`
    this.log(
      `${result.dryRun ? 'Dry run: would clear' : 'Cleared'} ${result.purged} legacy keys (${result.mode === 'all' ? 'all users' : `${result.selected} users with a verified token`}; ${skipped}).`,
    )
    if (result.csv) this.log(`Report: ${result.csv}`)
    else if (result.dryRun) this.log('Nothing was written.')
    return result
  }
}
