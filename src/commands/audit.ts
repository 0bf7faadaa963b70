import {Flags} from '@oclif/core'

import {renderAuditSummary} from '../lib/audit/audit-summary.js'
import {MigrateCommand} from '../lib/cli/migrate-command.js'
import {caCertFlag, ckanIniFlag, ckanUrlFlag, databaseUrlFlag, timeoutFlag} from '../lib/cli/shared-flags.js'
import {EXIT_CODES} from '../lib/errors.js'
import {DEFAULT_UPGRADE_TARGET, UPGRADE_TARGETS, type UpgradeTarget} from '../lib/site/ckan-version.js'
import {auditSite, type AuditResult} from '../lib/workflows/audit.js'

export default class Audit extends MigrateCommand<AuditResult> {
  static override description = `Read-only: one read-only, repeatable-read transaction with a statement_timeout on one connection (a SELECT-only role is enough). Counts legacy API keys and API tokens in PostgreSQL (--csv streams users through a server-side cursor), checks ckan.ini (JWT secrets, header names, service tokens, token expiry, environment overrides), harvest sources and the XLoader jobs database, and gives a verdict for the target version (--target, default 2.11): READY (exit 0) or NOT READY (exit 10). Never prints a key, token or secret; --csv writes one row per user with a key fingerprint (first 8 hex digits of its SHA-256).`
  static override examples = [
    '<%= config.bin %> <%= command.id %> --ckan-ini /etc/ckan/default/ckan.ini',
    '<%= config.bin %> <%= command.id %> --ckan-ini /etc/ckan/default/ckan.ini --ckan-url https://data.example.org --csv audit-users.csv',
    '<%= config.bin %> <%= command.id %> --database-url postgresql://ckan_ro@db.example.org/ckan_default --json',
    '<%= config.bin %> <%= command.id %> --ckan-ini /etc/ckan/default/ckan.ini --html readiness.html',
  ]
  static override flags = {
    'ca-cert': caCertFlag,
    'ckan-ini': ckanIniFlag,
    'ckan-url': ckanUrlFlag,
    csv: Flags.string({
      summary:
        'Write one row per user to this CSV file (0600): id, name, state, sysadmin, has_email, has_legacy_key, key_fingerprint, token_count, last_token_use.',
    }),
    'database-url': databaseUrlFlag,
    html: Flags.string({
      summary:
        'Write the readiness page to this file: one self-contained HTML page (verdict, blockers, charts with their tables) to send to data owners and the sign-off.',
    }),
    target: Flags.string({
      default: DEFAULT_UPGRADE_TARGET,
      options: [...UPGRADE_TARGETS],
      summary:
        'The CKAN version to judge readiness for: 2.10, 2.11 (the default, the newest released) or 2.12 (its dev-v2.12 branch, not released yet; adds the checks of its migrations 107 and 108).',
    }),
    'statement-timeout': Flags.integer({
      default: 120,
      min: 1,
      summary: 'Seconds any one database query may take (PostgreSQL statement_timeout).',
    }),
    timeout: timeoutFlag,
  }
  static override summary =
    'Inventory legacy API keys and tokens, check the configuration, and say whether the site is READY for the target CKAN version (--target).'

  async run(): Promise<AuditResult> {
    const {flags} = await this.parse(Audit)
    const result = await auditSite({
      caCertPath: flags['ca-cert'],
      ckanIniPath: flags['ckan-ini'],
      ckanUrl: flags['ckan-url'],
      csvPath: flags.csv,
      databaseUrl: flags['database-url'],
      htmlPath: flags.html,
      onUserScan: this.progress('Scanning users', 'users'),
      signal: this.signal,
      statementTimeoutMs: flags['statement-timeout'] * 1000,
      target: flags.target as UpgradeTarget,
      timeoutMs: flags.timeout * 1000,
    })
    this.log(renderAuditSummary(result))
    if (result.verdict.status !== 'READY') this.setExitCode(EXIT_CODES.blockersFound)
    return result
  }
}
