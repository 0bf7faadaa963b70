import {Flags} from '@oclif/core'

import {MigrateCommand} from '../lib/cli/migrate-command.js'
import {ckanIniFlag, ckanUrlFlag, databaseUrlFlag, dryRunFlag, outFlag, timeoutFlag} from '../lib/cli/shared-flags.js'
import {bundleAccess, type BundleResult, DEFAULT_SUFFIX} from '../lib/workflows/bundle.js'

export default class Bundle extends MigrateCommand<BundleResult> {
  static override description = `Reads the tokens issue-tokens stored in the run folder (--out) and writes, for each person, <bundle dir>/<safe name>${DEFAULT_SUFFIX}: an encrypted ZIP holding api_key.txt (the token) and server.cert (PEM), the layout DCOR-Aid and dclab read. Each bundle gets its own password; the passwords go to passwords.csv (0600) in the bundle folder, never to the screen, so you can send bundles and passwords through different channels. A rerun keeps bundles that are up to date and rewrites the others (--force rewrites all).

AES-256 (the default) opens in 7-Zip and most archive tools; DCOR-Aid and dclab use Python's zipfile, which opens only ZipCrypto (--encryption zipcrypto), a weak cipher: see docs/security-model.md.`
  static override examples = [
    '<%= config.bin %> <%= command.id %> --out run-2026-11 --server-cert /etc/ssl/certs/dcor.example.org.cert --dry-run',
    '<%= config.bin %> <%= command.id %> --out run-2026-11 --fetch-cert --ckan-url https://dcor.example.org --encryption zipcrypto --database-url postgresql://ckan@db/ckan_default',
    '<%= config.bin %> <%= command.id %> --out run-2026-11 --server-cert server.pem --users alice,bob --password-file chosen-passwords.csv',
  ]
  static override flags = {
    'allow-cert-host-mismatch': Flags.boolean({
      default: false,
      summary:
        "Bundle even though the certificate's CN is not the site's host (DCOR-Aid then connects users to the CN). Without it: exit 15.",
    }),
    'bundle-dir': Flags.string({
      summary: 'Folder for the bundles and passwords.csv (created 0700). Default: bundles/ inside --out.',
    }),
    'ckan-ini': ckanIniFlag,
    'ckan-url': ckanUrlFlag,
    'database-url': databaseUrlFlag,
    'dry-run': dryRunFlag,
    encryption: Flags.option({
      default: 'aes256' as const,
      options: ['aes256', 'zipcrypto'] as const,
      summary:
        'aes256: WinZip AES-256 (7-Zip, WinZip). zipcrypto: weak, but the only kind DCOR-Aid/dclab (Python zipfile) can open.',
    })(),
    'fetch-cert': Flags.boolean({
      exactlyOne: ['server-cert', 'fetch-cert'],
      summary: "Take the certificate chain from a TLS handshake with --ckan-url (default: the run's site).",
    }),
    force: Flags.boolean({
      default: false,
      summary: 'Rewrite every selected bundle with a new password, even an up-to-date one.',
    }),
    out: Flags.string({
      env: outFlag.env,
      required: true,
      summary: 'Run folder that issue-tokens wrote (--out of that run): the tokens to bundle.',
    }),
    'password-file': Flags.string({summary: 'CSV of user,password lines to use instead of generated passwords.'}),
    'server-cert': Flags.string({
      exactlyOne: ['server-cert', 'fetch-cert'],
      summary:
        "PEM file with the site's certificate (chain), server certificate first; its CN must be the site's host.",
    }),
    suffix: Flags.string({default: DEFAULT_SUFFIX, summary: 'File name ending of each bundle.'}),
    timeout: timeoutFlag,
    users: Flags.string({
      delimiter: ',',
      multiple: true,
      summary: 'Only these users (CKAN names, comma-separated). Default: everyone with a token in the run.',
    }),
  }
  static override summary = 'Write an encrypted DCOR-Aid access bundle (.dcor-access) per user, passwords kept apart.'

  async run(): Promise<BundleResult> {
    const {flags} = await this.parse(Bundle)
    const result = await bundleAccess({
      allowCertHostMismatch: flags['allow-cert-host-mismatch'],
      bundleDir: flags['bundle-dir'],
      ckanUrl: flags['ckan-url'],
      database: {ckanIni: flags['ckan-ini'], databaseUrl: flags['database-url']},
      dryRun: flags['dry-run'],
      encryption: flags.encryption,
      force: flags.force,
      progress: this.progress('Writing bundles', 'bundles'),
      out: flags.out,
      passwordFile: flags['password-file'],
      serverCert: flags['server-cert'] ? {file: flags['server-cert']} : {fetch: true, timeoutMs: flags.timeout * 1000},
      signal: this.signal,
      suffix: flags.suffix,
      users: flags.users,
    })
    const {counts, serverCert} = result
    this.log(
      result.dryRun
        ? `Dry run: would write ${counts.written} bundle(s) and keep ${counts.kept} in ${result.bundleDir}; nothing was written.`
        : `Wrote ${counts.written} bundle(s), kept ${counts.kept} up-to-date one(s) in ${result.bundleDir} (${result.encryption}).`,
    )
    this.log(
      `Server certificate: CN=${serverCert.cn ?? '(none)'}, ${serverCert.count} in chain, SHA-256 ${serverCert.fingerprint256}.`,
    )
    if (!result.dryRun)
      this.log(`Passwords: ${result.passwordsFile} (0600). Send them through a different channel than the bundles.`)
    return result
  }
}
