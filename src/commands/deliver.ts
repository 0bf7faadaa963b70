import {Flags} from '@oclif/core'

import {MigrateCommand} from '../lib/cli/migrate-command.js'
import {type ProgressBar, startProgressBar} from '../lib/cli/progress-bar.js'
import {ckanIniFlag, databaseUrlFlag, dryRunFlag, outFlag} from '../lib/cli/shared-flags.js'
import {SMTP_PASSWORD_ENV} from '../lib/deliver/smtp-settings.js'
import {EXIT_CODES} from '../lib/errors.js'
import {type DeliverResult, deliverBundles} from '../lib/workflows/deliver.js'

export default class Deliver extends MigrateCommand<DeliverResult> {
  static override description = `Sends each person the .dcor-access bundle that bundle wrote for them (bundles/ in --out), attached to a mail from a template, through your SMTP server (STARTTLS required unless --allow-plain; certificate always verified). The password never travels in that mail: it goes to password-channel.csv (0600) for a second channel (phone, SMS, letter), and, with --contacts/--password-to, also in a second mail to a different address.

Exactly once and resumable: every send is journaled (deliveries.jsonl) before it goes out and the server's acceptance (its queue id) after; a rerun sends only what no run sent. A send whose outcome is unknown (cut off after the message went out, before the server's reply) is reported, not sent again, unless --resend-unknown. Users without an email address, sharing one, or deleted are skipped with the reason. The report is deliver-report.csv in --out.`
  static override examples = [
    '<%= config.bin %> <%= command.id %> --out run-2026-11 --from "DCOR team <dcor@example.org>" --dry-run',
    `${SMTP_PASSWORD_ENV}=… <%= config.bin %> <%= command.id %> --out run-2026-11 --smtp-url smtp://mailer@mail.example.org:587 --from dcor@example.org --database-url postgresql://ckan@db/ckan_default`,
    '<%= config.bin %> <%= command.id %> --out run-2026-11 --smtp-url smtps://mailer@mail.example.org --smtp-password-file smtp.pw --from dcor@example.org --contacts second-addresses.csv --password-to private_email --template mail/',
  ]
  static override flags = {
    'allow-plain': Flags.boolean({
      default: false,
      helpGroup: 'SMTP',
      summary:
        'Send even when an smtp:// server offers no STARTTLS (bundles and the SMTP password then travel unencrypted).',
    }),
    'bundle-dir': Flags.string({
      summary: 'Folder bundle wrote the bundles and passwords.csv into. Default: bundles/ inside --out.',
    }),
    'ca-cert': Flags.string({
      env: 'CKAN_MIGRATE_SMTP_CA_CERT',
      helpGroup: 'SMTP',
      summary:
        'PEM file with the CA certificate(s) to trust for the mail server (a private CA). TLS is always verified.',
    }),
    'ckan-ini': ckanIniFlag,
    concurrency: Flags.integer({
      default: 2,
      max: 16,
      min: 1,
      summary: 'SMTP connections (messages in flight) at once.',
    }),
    contacts: Flags.string({
      dependsOn: ['password-to'],
      summary:
        'CSV with a header row, a user column and the column --password-to names: second addresses for the password mail.',
    }),
    'database-url': databaseUrlFlag,
    'dry-run': dryRunFlag,
    'eml-dir': Flags.string({
      summary:
        'With --dry-run: folder (0700) for the rendered messages as .eml files. Default: deliver-dry-run/ inside --out.',
    }),
    from: Flags.string({
      env: 'CKAN_MIGRATE_MAIL_FROM',
      required: true,
      summary: 'Sender of the mails: admin@example.org or "DCOR team <admin@example.org>".',
    }),
    out: Flags.string({
      env: outFlag.env,
      required: true,
      summary: 'Run folder that issue-tokens and bundle wrote (--out of that run).',
    }),
    'password-template': Flags.string({
      summary: 'Folder with subject.txt, body.txt, body.html for the password mail (built-in English one by default).',
    }),
    'password-to': Flags.string({
      dependsOn: ['contacts'],
      summary: 'Column of --contacts holding the address the password mail goes to (never the bundle address).',
    }),
    'per-minute': Flags.integer({default: 60, max: 100_000, min: 1, summary: 'At most this many messages per minute.'}),
    'reply-to': Flags.string({summary: 'Reply-To address of the mails.'}),
    'resend-unknown': Flags.boolean({
      default: false,
      summary: 'Send again the messages whose outcome is unknown (the user may then get two).',
    }),
    retries: Flags.integer({
      default: 3,
      max: 10,
      min: 0,
      summary: 'Retries of a message the server refused with 4xx, or that failed before it went out.',
    }),
    'retry-wait': Flags.integer({
      default: 30,
      min: 0,
      summary: 'Seconds before the first retry; each further retry waits twice as long (at most 10 minutes).',
    }),
    'smtp-password-file': Flags.string({
      helpGroup: 'SMTP',
      summary: `File holding the SMTP password (or set ${SMTP_PASSWORD_ENV}). Never on the command line.`,
    }),
    'smtp-url': Flags.string({
      env: 'CKAN_MIGRATE_SMTP_URL',
      helpGroup: 'SMTP',
      summary: 'smtp://user@host:587 (STARTTLS) or smtps://user@host:465 (TLS). Required unless --dry-run.',
    }),
    template: Flags.string({
      summary: 'Folder with subject.txt, body.txt, body.html for the bundle mail (built-in English one by default).',
    }),
    timeout: Flags.integer({
      default: 60,
      min: 1,
      summary: 'Seconds to wait for the mail server (connect, each reply).',
    }),
    users: Flags.string({
      delimiter: ',',
      multiple: true,
      summary: 'Only these users (CKAN names, comma-separated). Default: everyone with a bundle in the run.',
    }),
  }
  static override summary = 'Mail each user their access bundle, the password by another channel, exactly once.'

  async run(): Promise<DeliverResult> {
    const {flags} = await this.parse(Deliver)
    let progress: ProgressBar | undefined
    const result = await deliverBundles({
      bundleDir: flags['bundle-dir'],
      concurrency: flags.concurrency,
      contacts:
        flags.contacts && flags['password-to'] ? {column: flags['password-to'], file: flags.contacts} : undefined,
      database: {ckanIni: flags['ckan-ini'], databaseUrl: flags['database-url']},
      dryRun: flags['dry-run'],
      emlDir: flags['eml-dir'],
      from: flags.from,
      onMessage: () => progress?.increment(),
      onStart: (total) => {
        progress = startProgressBar({enabled: !this.jsonEnabled(), label: 'Sending', total, unit: 'users'})
      },
      onWarning: (message) => this.warn(message),
      out: flags.out,
      passwordTemplate: flags['password-template'],
      perMinute: flags['per-minute'],
      replyTo: flags['reply-to'],
      resendUnknown: flags['resend-unknown'],
      retries: flags.retries,
      retryWaitMs: flags['retry-wait'] * 1000,
      signal: this.signal,
      smtp: flags['smtp-url']
        ? {
            allowPlain: flags['allow-plain'],
            caCertPath: flags['ca-cert'],
            passwordFile: flags['smtp-password-file'],
            url: flags['smtp-url'],
          }
        : undefined,
      template: flags.template,
      timeoutMs: flags.timeout * 1000,
      users: flags.users,
    }).finally(() => progress?.stop())
    const {counts} = result
    if (result.dryRun) {
      this.log(
        `Dry run: would send ${counts.wouldSend} bundle mail(s); ${counts.alreadySent} already sent, ${counts.skipped} skipped, ${counts.unknown} unknown. Nothing was sent.`,
      )
      if (result.emlDir) this.log(`Rendered messages (no passwords): ${result.emlDir}`)
    } else {
      this.log(
        `Sent ${counts.sent} bundle mail(s) and ${counts.passwordMails} password mail(s) via ${result.smtp}; ${counts.alreadySent} already sent, ${counts.skipped} skipped, ${counts.failed} failed, ${counts.unknown} unknown.`,
      )
      this.log(`Report: ${result.report}`)
      this.log(
        `Passwords for the second channel: ${result.passwordChannelFile} (0600). Never send them to the bundle's address.`,
      )
    }
    for (const row of result.deliveries) {
      if (['failed', 'unknown', 'skipped'].includes(row.bundle.status))
        this.logToStderr(`${row.bundle.status}: ${row.userName}: ${row.bundle.reason ?? ''}`)
      if (row.password.status === 'failed' || row.password.status === 'unknown')
        this.logToStderr(`password mail ${row.password.status}: ${row.userName}: ${row.password.reason ?? ''}`)
    }
    if (counts.failed > 0 || counts.unknown > 0 || counts.notAttempted > 0) this.setExitCode(EXIT_CODES.partialFailure)
    return result
  }
}
