import {Flags} from '@oclif/core'

import {MigrateCommand} from '../lib/cli/migrate-command.js'
import {ckanIniFlag, databaseUrlFlag, requiredOutFlag} from '../lib/cli/shared-flags.js'
import {EXIT_CODES} from '../lib/errors.js'
import {type AdoptionResult, checkAdoption, parsePercent} from '../lib/workflows/adoption.js'

export default class Adoption extends MigrateCommand<AdoptionResult> {
  static override description = `Read-only. For every user (and service) with a token in the run folder: when the token was issued, whether a bundle was written for it, the first and last use CKAN has seen (api_token.last_access, which CKAN updates on every authenticated request; ckan-migrate's own verify calls are left out), whether the legacy key is still in the database, and whether the token was revoked or has expired. Prints the counts and writes <out>/adoption-report.csv (no secrets; formula-safe). With --require 95%, exits 18 when fewer users than that have used their token, so a runbook can gate the upgrade on it. Works before the upgrade (2.9) and after it (2.10, 2.11).`
  static override examples = [
    '<%= config.bin %> <%= command.id %> --out ./run-2026-11 --ckan-ini /etc/ckan/default/ckan.ini',
    '<%= config.bin %> <%= command.id %> --out ./run-2026-11 --database-url postgresql://ckan@db/ckan --require 95%',
    '<%= config.bin %> <%= command.id %> --out ./run-2026-11 --ckan-ini /etc/ckan/default/ckan.ini --json | jq .result.percentUsed',
  ]
  static override flags = {
    'bundle-dir': Flags.string({summary: 'Where bundle wrote the bundles and passwords.csv (default: <out>/bundles).'}),
    'ckan-ini': ckanIniFlag,
    'database-url': databaseUrlFlag,
    out: requiredOutFlag,
    require: Flags.string({
      summary: 'Exit 18 unless at least this share of users have used their token, e.g. 95%.',
    }),
  }
  static override summary = 'Who has switched to their token: first and last use, legacy keys left, a gate.'

  async run(): Promise<AdoptionResult> {
    const {flags} = await this.parse(Adoption)
    const requirePercent = flags.require === undefined ? undefined : parsePercent(flags.require)
    const result = await checkAdoption({
      bundleDir: flags['bundle-dir'],
      ckanIniPath: flags['ckan-ini'],
      databaseUrl: flags['database-url'],
      out: flags.out,
      requirePercent,
    })
    const {counts} = result
    this.log(`${result.summary} (run ${result.runId})`)
    this.log(
      `  legacy key still present: ${counts.legacyKeyPresent}; bundles written: ${counts.bundled}; revoked: ${counts.revoked}; expired: ${counts.expired}; rotations in their grace period: ${counts.rotationsPending}`,
    )
    if (result.notUsedSample.length > 0)
      this.log(
        `  not used yet: ${result.notUsedSample.map((name) => JSON.stringify(name)).join(', ')}${counts.notUsed > result.notUsedSample.length ? ` and ${counts.notUsed - result.notUsedSample.length} more` : ''}`,
      )
    if (result.required)
      this.log(
        result.required.met
          ? `Required ${result.required.percent}%: met.`
          : `Required ${result.required.percent}%: NOT met (${result.percentUsed}%). Remind the users in the report, then check again.`,
      )
    this.log(`Report: ${result.reportPath}`)
    if (result.required && !result.required.met) this.setExitCode(EXIT_CODES.adoptionBelowRequired)
    return result
  }
}
