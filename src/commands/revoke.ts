import {Flags} from '@oclif/core'

import {describeConcurrency} from '../lib/cli/concurrency-summary.js'
import {MigrateCommand} from '../lib/cli/migrate-command.js'
import {
  allowOtherUrlFlag,
  apiKeyFileFlag,
  caCertFlag,
  ckanIniFlag,
  ckanUrlFlag,
  concurrencyOptions,
  dryRunFlag,
  headerNameFlag,
  loadFlags,
  requiredOutFlag,
  timeoutFlag,
} from '../lib/cli/shared-flags.js'
import {EXIT_CODES} from '../lib/errors.js'
import {revokeTokens, type RevokeResult} from '../lib/workflows/revoke.js'

export default class Revoke extends MigrateCommand<RevokeResult> {
  static override description = `Rollback: revokes every token in the run folder (issue-tokens' user tokens and rewrite-config's service tokens), or only those of --users, by jti through api_token_revoke with a sysadmin's credential. Idempotent: running it again is safe. Each revoke is journaled (token-revoked); the report is <out>/revoke-report.csv. After a revoke, issue tokens again with a new --out.`
  static override examples = [
    '<%= config.bin %> <%= command.id %> --out ./run-2026-11 --api-key-file ~/.ckan-admin-token --dry-run',
    '<%= config.bin %> <%= command.id %> --out ./run-2026-11 --api-key-file ~/.ckan-admin-token --users alice,bob',
  ]
  static override flags = {
    'allow-other-url': allowOtherUrlFlag,
    'api-key-file': apiKeyFileFlag,
    'ca-cert': caCertFlag,
    'ckan-ini': ckanIniFlag,
    'ckan-url': ckanUrlFlag,
    ...loadFlags,
    'dry-run': dryRunFlag,
    'header-name': headerNameFlag,
    out: requiredOutFlag,
    timeout: timeoutFlag,
    users: Flags.string({summary: 'Only the tokens of these users: names or ids, comma-separated.'}),
  }
  static override summary = "Revoke a run's tokens (rollback)."

  async run(): Promise<RevokeResult> {
    const {flags} = await this.parse(Revoke)
    const result = await revokeTokens({
      allowOtherUrl: flags['allow-other-url'],
      apiKeyFile: flags['api-key-file'],
      caCertPath: flags['ca-cert'],
      ckanIniPath: flags['ckan-ini'],
      ckanUrl: flags['ckan-url'],
      ...concurrencyOptions(flags),
      dryRun: flags['dry-run'],
      headerName: flags['header-name'],
      out: flags.out,
      progress: this.progress('revoking tokens', 'tokens', {showLimit: true}),
      signal: this.signal,
      timeoutMs: flags.timeout * 1000,
      users: flags.users?.split(','),
    })
    const {counts} = result
    if (result.dryRun)
      this.log(
        `Dry run: would revoke ${counts.planned} tokens of run ${result.runId} (${counts.alreadyRevoked} already revoked). Nothing was changed.`,
      )
    else {
      this.log(
        `${counts.revoked} of ${counts.tokens} tokens revoked, ${counts.alreadyRevoked} already revoked, ${counts.failed} failed (run ${result.runId}).`,
      )
      for (const failure of result.failures) this.log(`  failed ${JSON.stringify(failure.user)}: ${failure.reason}`)
      this.log(`  ${describeConcurrency(result.concurrency)}`)
      this.log(`Report: ${result.reportPath}`)
    }
    if (this.signal.aborted) this.setExitCode(EXIT_CODES.interrupted)
    else if (counts.failed > 0) this.setExitCode(EXIT_CODES.partialFailure)
    return result
  }
}
