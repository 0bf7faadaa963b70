import {Flags} from '@oclif/core'

import {describeConcurrency} from '../lib/cli/concurrency-summary.js'
import {MigrateCommand} from '../lib/cli/migrate-command.js'
import {
  allowOtherUrlFlag,
  caCertFlag,
  ckanIniFlag,
  ckanUrlFlag,
  concurrencyOptions,
  databaseUrlFlag,
  headerNameFlag,
  loadFlags,
  requiredOutFlag,
  timeoutFlag,
} from '../lib/cli/shared-flags.js'
import {EXIT_CODES} from '../lib/errors.js'
import {verifyTokens, type VerifyResult} from '../lib/workflows/verify.js'

export default class Verify extends MigrateCommand<VerifyResult> {
  static override description = `For each token in the run folder (not revoked by \`revoke\`), calls api_token_list for the token's own user with that token alone: 200 means CKAN accepts it, 403 means it does not (CKAN never answers 401). With --legacy, also checks that each user's legacy key (read from the database now, never stored) is refused, as it must be after the upgrade to 2.10+. Journals a token-verified event per token (purge-keys trusts only users whose latest verification is ok) and writes <out>/verify-report.csv. Exits 6 when anything fails.`
  static override examples = [
    '<%= config.bin %> <%= command.id %> --out ./run-2026-11',
    '<%= config.bin %> <%= command.id %> --out ./run-2026-11 --legacy --ckan-ini /etc/ckan/default/ckan.ini',
  ]
  static override flags = {
    'allow-other-url': allowOtherUrlFlag,
    'ca-cert': caCertFlag,
    'ckan-ini': ckanIniFlag,
    'ckan-url': ckanUrlFlag,
    ...loadFlags,
    'database-url': databaseUrlFlag,
    'header-name': headerNameFlag,
    legacy: Flags.boolean({
      default: false,
      summary: "Also check every user's legacy key is refused (run after the upgrade; needs the database).",
    }),
    out: requiredOutFlag,
    timeout: timeoutFlag,
  }
  static override summary = 'Prove each token of a run works, using only that token.'

  async run(): Promise<VerifyResult> {
    const {flags} = await this.parse(Verify)
    const result = await verifyTokens({
      allowOtherUrl: flags['allow-other-url'],
      caCertPath: flags['ca-cert'],
      ckanIniPath: flags['ckan-ini'],
      ckanUrl: flags['ckan-url'],
      ...concurrencyOptions(flags),
      databaseUrl: flags['database-url'],
      headerName: flags['header-name'],
      legacy: flags.legacy,
      out: flags.out,
      progress: this.progress('verifying tokens', 'tokens', {showLimit: true}),
      signal: this.signal,
      timeoutMs: flags.timeout * 1000,
    })
    const {counts} = result
    // Tokens `revoke` revoked are not checked: say so rather than count them as working or not.
    const revoked = counts.revoked > 0 ? `; ${counts.revoked} revoked by revoke (not checked)` : ''
    this.log(
      counts.tokens === 0 && counts.revoked > 0
        ? `All ${counts.revoked} tokens of run ${result.runId} were revoked by revoke: none left to verify.`
        : `${counts.ok} of ${counts.tokens} tokens work${revoked}${counts.unchecked > 0 ? `; ${counts.unchecked} could not be checked` : ''}${flags.legacy ? `; ${counts.legacyStillAccepted} legacy keys are still accepted` : ''} (run ${result.runId}).`,
    )
    for (const failure of result.failures) this.log(`  failed ${JSON.stringify(failure.user)}: ${failure.reason}`)
    for (const skipped of result.unchecked)
      this.log(`  could not check ${JSON.stringify(skipped.user)}: ${skipped.reason}`)
    this.log(`  ${describeConcurrency(result.concurrency)}`)
    this.log(`Report: ${result.reportPath}`)
    if (this.signal.aborted) this.setExitCode(EXIT_CODES.interrupted)
    else if (counts.failed > 0) this.setExitCode(EXIT_CODES.verificationFailed)
    // Nothing refused, but not everything answered: not a pass, and not "does not work" either.
    else if (counts.unchecked > 0) this.setExitCode(EXIT_CODES.verificationIncomplete)
    return result
  }
}
