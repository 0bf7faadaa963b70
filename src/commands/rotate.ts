import {Flags} from '@oclif/core'

import {MigrateCommand} from '../lib/cli/migrate-command.js'
import {
  allowOtherUrlFlag,
  apiKeyFileFlag,
  caCertFlag,
  ckanUrlFlag,
  concurrencyOptions,
  loadFlags,
  dryRunFlag,
  headerNameFlag,
  requiredOutFlag,
  timeoutFlag,
} from '../lib/cli/shared-flags.js'
import {EXIT_CODES} from '../lib/errors.js'
import {parseDuration, rotateTokens, type RotateResult} from '../lib/workflows/rotate.js'

const UNITS: Record<string, number> = {day: 86_400, hour: 3600, minute: 60, second: 1}

export default class Rotate extends MigrateCommand<RotateResult> {
  static override description = `Rotation in CKAN's model (one JWT secret, no key ids). Without --finish: for each selected token of the run, creates a successor with the same exactly-once protocol as issue-tokens (journal, durable token store, reconciliation; the successor is stored with its predecessor, so a rerun never makes a second one), writes fresh bundles for people who had one, and switches each service's config (the files rewrite-config wrote) to its successor atomically. The predecessors keep working. With --finish: revokes each predecessor whose successor has been used (api_token.last_access) or whose grace period (--grace) is over; a service's only once its config holds the successor and the old token is no longer the one in use. Selection: --older-than, --expiring-within, --users, --all; without any, the default policy (older than 335 days or expiring within 30 days; successors live 365 days where expire_api_token is on; grace 14 days). Reports: <out>/rotate-report.csv, <out>/rotate-finish-report.csv.`
  static override examples = [
    '<%= config.bin %> <%= command.id %> --out ./run-2026-11 --api-key-file ~/.ckan-admin-token --dry-run',
    '<%= config.bin %> <%= command.id %> --out ./run-2026-11 --api-key-file ~/.ckan-admin-token --older-than 300d --expires-in 365 --unit day',
    '<%= config.bin %> <%= command.id %> --out ./run-2026-11 --api-key-file ~/.ckan-admin-token --finish --grace 14d',
  ]
  static override flags = {
    'allow-other-url': allowOtherUrlFlag,
    all: Flags.boolean({default: false, summary: 'Rotate every token of the run (people and services).'}),
    'api-key-file': apiKeyFileFlag,
    'ca-cert': caCertFlag,
    'ckan-url': ckanUrlFlag,
    ...loadFlags,
    'dry-run': dryRunFlag,
    'expires-in': Flags.integer({
      min: 1,
      summary: "Successors' lifetime in --unit steps where expire_api_token is on (default 365 days).",
    }),
    'expiring-within': Flags.string({summary: 'Rotate tokens whose exp is within this time, e.g. 30d.'}),
    finish: Flags.boolean({
      default: false,
      summary: 'Revoke the predecessors whose successor was used or whose grace period is over.',
    }),
    grace: Flags.string({
      summary: 'With --finish: revoke unused successors’ predecessors after this long (default 14d).',
    }),
    'header-name': headerNameFlag,
    'older-than': Flags.string({summary: 'Rotate tokens created longer ago than this, e.g. 300d.'}),
    out: requiredOutFlag,
    timeout: timeoutFlag,
    unit: Flags.option({options: ['second', 'minute', 'hour', 'day'] as const, summary: 'Unit of --expires-in.'})(),
    users: Flags.string({summary: 'Only these users (names or ids) or services (xloader, …), comma-separated.'}),
  }
  static override summary = "Rotate a run's tokens: successors now, predecessors revoked by --finish."

  async run(): Promise<RotateResult> {
    const {flags} = await this.parse(Rotate)
    const result = await rotateTokens({
      all: flags.all,
      allowOtherUrl: flags['allow-other-url'],
      apiKeyFile: flags['api-key-file'],
      caCertPath: flags['ca-cert'],
      ckanUrl: flags['ckan-url'],
      ...concurrencyOptions(flags),
      dryRun: flags['dry-run'],
      expiresIn: flags['expires-in'],
      headerName: flags['header-name'],
      expiringWithinMs:
        flags['expiring-within'] === undefined
          ? undefined
          : parseDuration('--expiring-within', flags['expiring-within']),
      finish: flags.finish,
      graceMs: flags.grace === undefined ? undefined : parseDuration('--grace', flags.grace),
      olderThanMs: flags['older-than'] === undefined ? undefined : parseDuration('--older-than', flags['older-than']),
      out: flags.out,
      signal: this.signal,
      timeoutMs: flags.timeout * 1000,
      unit: flags.unit ? UNITS[flags.unit] : undefined,
      users: flags.users?.split(','),
    })
    for (const warning of result.warnings) this.warn(warning)
    const counts = Object.entries(result.counts)
      .map(([name, count]) => `${count} ${name}`)
      .join(', ')
    const what = result.finish ? 'rotate --finish' : 'rotate'
    this.log(`${result.dryRun ? 'Dry run of ' : ''}${what} (run ${result.runId}): ${counts || 'nothing to do'}.`)
    if (!result.finish && !result.dryRun) {
      if (result.configsUpdated.length > 0)
        this.log(`  config switched to the successors: ${result.configsUpdated.join(', ')} (restart those services)`)
      this.log(`  ${result.bundlesWritten} fresh bundles written; deliver them, then run rotate --finish.`)
    }
    for (const entry of result.attention) this.log(`  ${entry.outcome} ${JSON.stringify(entry.label)}: ${entry.reason}`)
    if (result.dryRun) this.log('Nothing was written to CKAN, the configs or --out.')
    else this.log(`Report: ${result.reportPath}`)
    if (this.signal.aborted) this.setExitCode(EXIT_CODES.interrupted)
    else if ((result.counts.failed ?? 0) > 0) this.setExitCode(EXIT_CODES.partialFailure)
    return result
  }
}
