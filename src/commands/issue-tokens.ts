import {Flags} from '@oclif/core'

import {describeConcurrency} from '../lib/cli/concurrency-summary.js'
import {MigrateCommand} from '../lib/cli/migrate-command.js'
import {
  apiKeyFileFlag,
  caCertFlag,
  ckanIniFlag,
  concurrencyOptions,
  databaseUrlFlag,
  dryRunFlag,
  headerNameFlag,
  loadFlags,
  requiredCkanUrlFlag,
  requiredOutFlag,
  timeoutFlag,
} from '../lib/cli/shared-flags.js'
import {EXIT_CODES} from '../lib/errors.js'
import {DEFAULT_TOKEN_NAME} from '../lib/run/token-name.js'
import {issueTokens, type IssueTokensResult} from '../lib/workflows/issue-tokens.js'

const UNITS: Record<string, number> = {day: 86_400, hour: 3600, minute: 60, second: 1}

export default class IssueTokens extends MigrateCommand<IssueTokensResult> {
  static override description = `Selects users from the CKAN database (by default: active users holding a legacy API key, without the site user) and creates one API token for each through api_token_create, with a sysadmin's credential. Every token is fsync'd to the run folder's token store before the user counts as done; running the same command with the same --out resumes and never gives a user a second token of this run. A create whose outcome is unknown (timeout, reset, proxy 5xx) is reconciled through api_token_list, never blindly replayed. Tokens never appear in the output, the journal or the CSV report (<out>/issue-tokens-report.csv).`
  static override examples = [
    '<%= config.bin %> <%= command.id %> --ckan-url https://data.example.org --ckan-ini /etc/ckan/default/ckan.ini --api-key-file ~/.ckan-admin-token --out ./run-2026-11 --dry-run',
    '<%= config.bin %> <%= command.id %> --ckan-url https://data.example.org --ckan-ini /etc/ckan/default/ckan.ini --api-key-file ~/.ckan-admin-token --out ./run-2026-11',
    '<%= config.bin %> <%= command.id %> --ckan-url https://data.example.org --database-url postgresql://ckan@db/ckan --api-key-file admin.key --out ./run --users alice,bob --expires-in 365 --unit day',
  ]
  static override flags = {
    'api-key-file': apiKeyFileFlag,
    'ca-cert': caCertFlag,
    'ckan-ini': ckanIniFlag,
    'ckan-url': requiredCkanUrlFlag,
    ...loadFlags,
    'database-url': databaseUrlFlag,
    'dry-run': dryRunFlag,
    'header-name': headerNameFlag,
    'expires-in': Flags.integer({
      min: 1,
      summary: 'Token lifetime in --unit steps (required when CKAN has the expire_api_token plugin).',
    }),
    'include-pending': Flags.boolean({
      default: false,
      summary: 'Also give tokens to pending users (CKAN 2.10+ treats them as anonymous until activated).',
    }),
    'include-site-user': Flags.boolean({default: false, summary: 'Also give the site user (ckan.site_id) a token.'}),
    limit: Flags.integer({min: 1, summary: 'At most this many users (in name order): a small first batch.'}),
    out: requiredOutFlag,
    'sysadmins-only': Flags.boolean({default: false, summary: 'Only sysadmins.'}),
    timeout: timeoutFlag,
    'token-name': Flags.string({
      default: DEFAULT_TOKEN_NAME,
      summary: 'Token name template: {date}, {run} (required) and {user}.',
    }),
    unit: Flags.option({options: ['second', 'minute', 'hour', 'day'] as const, summary: 'Unit of --expires-in.'})(),
    users: Flags.string({exclusive: ['users-file'], summary: 'Only these users: names or ids, comma-separated.'}),
    'users-file': Flags.string({
      exclusive: ['users'],
      summary: 'Only the users named in this file, one name or id per line.',
    }),
  }
  static override summary = 'Give every selected user exactly one API token (resumable, never a secret in output).'

  async run(): Promise<IssueTokensResult> {
    const {flags} = await this.parse(IssueTokens)
    const result = await issueTokens({
      apiKeyFile: flags['api-key-file'],
      caCertPath: flags['ca-cert'],
      ckanIniPath: flags['ckan-ini'],
      ckanUrl: flags['ckan-url'],
      ...concurrencyOptions(flags),
      databaseUrl: flags['database-url'],
      dryRun: flags['dry-run'],
      expiresIn: flags['expires-in'],
      headerName: flags['header-name'],
      includePending: flags['include-pending'],
      includeSiteUser: flags['include-site-user'],
      limit: flags.limit,
      out: flags.out,
      progress: this.progress('issuing tokens', 'users', {showLimit: true}),
      signal: this.signal,
      sysadminsOnly: flags['sysadmins-only'],
      timeoutMs: flags.timeout * 1000,
      tokenName: flags['token-name'],
      unit: flags.unit ? UNITS[flags.unit] : undefined,
      users: flags.users?.split(','),
      usersFile: flags['users-file'],
    })
    this.render(result)
    if (result.interrupted) this.setExitCode(EXIT_CODES.interrupted)
    else if (result.counts.failed > 0) this.setExitCode(EXIT_CODES.partialFailure)
    return result
  }

  private render(result: IssueTokensResult): void {
    const {counts} = result
    const skipped = Object.entries(result.skippedByReason).map(([reason, count]) => `  skipped ${count}: ${reason}`)
    if (result.dryRun) {
      this.log(
        `Dry run against CKAN ${result.ckanVersion}: ${counts.planned} users would get a token, ${counts.alreadyIssued} already have one from this run${counts.revoked > 0 ? `, ${counts.revoked} had theirs revoked` : ''}.`,
      )
      for (const line of skipped) this.log(line)
      this.log('Nothing was written to CKAN or to --out.')
      return
    }
    this.log(
      `${counts.issued} tokens issued, ${counts.alreadyIssued} already issued, ${counts.failed} failed, ${counts.notStarted} not started (run ${result.runId}, CKAN ${result.ckanVersion}).`,
    )
    if (counts.revoked > 0)
      this.log(
        `  ${counts.revoked} users' tokens of this run were revoked (rollback): they get no new one here; use a new --out to issue again.`,
      )
    for (const line of skipped) this.log(line)
    for (const failure of result.failures) this.log(`  failed ${JSON.stringify(failure.user)}: ${failure.reason}`)
    if (result.interrupted) this.log('Interrupted: run the same command again to go on.')
    else if (counts.failed > 0) this.log('Run the same command again with the same --out to retry the failed users.')
    this.log(`  ${describeConcurrency(result.concurrency)}`)
    this.log(`Report: ${result.reportPath}`)
  }
}
