import {Flags, type Interfaces} from '@oclif/core'

import {readCkanIni} from '../lib/site/ckan-ini.js'
import {chooseDatabaseUrl, effectiveSetting} from '../lib/site/ckan-settings.js'
import {MigrateCommand} from '../lib/cli/migrate-command.js'
import {isInteractive} from '../lib/cli/progress-bar.js'
import {ckanIniFlag, databaseUrlFlag, dryRunFlag} from '../lib/cli/shared-flags.js'
import {EXIT_CODES, MigrateError} from '../lib/errors.js'
import {Secret} from '../lib/secret.js'
import {backupDatabase, type BackupResult, verifyBackup, type VerifyBackupResult} from '../lib/workflows/backup.js'

export default class Backup extends MigrateCommand<BackupResult | VerifyBackupResult> {
  static override description = `Runs pg_dump --format=custom and streams the dump straight into OpenPGP encryption, so no plain copy ever touches the disk (it holds e-mail addresses and, on 2.9, working legacy keys). Writes <dir>/ckan-db_<site>_<UTC time>_<key id>.pgc.gpg (0600 in a 0700 folder, atomically) and a <file>.json sidecar with its size, SHA-256 and tables; purge-keys checks that sidecar. --recipient-key encrypts in-process (OpenPGP.js); --key-id uses the local GnuPG keyring through gpg. --verify decrypts a backup in memory into pg_restore --list.`
  static override examples = [
    '<%= config.bin %> <%= command.id %> --ckan-ini /etc/ckan/default/ckan.ini --dir /var/backups/ckan --key-id 8FD98B2183B2C228',
    '<%= config.bin %> <%= command.id %> --database-url postgresql://ckan@db/ckan --dir ./backups --recipient-key backup-key.asc',
    'CKAN_MIGRATE_SECRET_KEY_PASSPHRASE=… <%= config.bin %> <%= command.id %> --verify ./backups/ckan-db_default_20261122T020000Z_8FD98B2183B2C228.pgc.gpg --secret-key backup-secret.asc',
  ]
  static override flags = {
    'ckan-ini': ckanIniFlag,
    'database-url': databaseUrlFlag,
    dir: Flags.string({
      exclusive: ['verify'],
      summary: 'Folder for the encrypted backup and its sidecar (created 0700).',
    }),
    'dry-run': dryRunFlag,
    'key-id': Flags.string({
      exclusive: ['recipient-key', 'verify'],
      summary: 'Encrypt to this key id or fingerprint of the local GnuPG keyring (runs gpg).',
    }),
    'pg-bin': Flags.string({
      env: 'CKAN_MIGRATE_PG_BIN',
      summary: 'Folder holding pg_dump and pg_restore, e.g. /usr/lib/postgresql/16/bin (default: the PATH).',
    }),
    'recipient-key': Flags.string({
      exclusive: ['key-id', 'verify'],
      summary: 'Encrypt to the OpenPGP public key in this file (armored or binary).',
    }),
    'secret-key': Flags.string({
      dependsOn: ['verify'],
      summary:
        'With --verify: the OpenPGP secret key file; its passphrase comes from CKAN_MIGRATE_SECRET_KEY_PASSPHRASE.',
    }),
    verify: Flags.string({
      summary: 'Check that this backup decrypts and pg_restore --list reads it (nothing plain is written).',
    }),
  }
  static override summary = 'Back up the CKAN database, encrypted with OpenPGP, before anything changes.'

  async run(): Promise<BackupResult | VerifyBackupResult> {
    const {flags} = await this.parse(Backup)
    const onProgress = this.byteProgress(flags.json ? 'off' : flags.verify ? 'verified' : 'dumped')
    try {
      return await this.backupOrVerify(flags, onProgress)
    } finally {
      if (this.#progressShown) process.stderr.write('\n')
    }
  }

  #progressShown = false

  private async backupOrVerify(
    flags: Interfaces.InferredFlags<typeof Backup.flags>,
    onProgress: ((bytes: number) => void) | undefined,
  ): Promise<BackupResult | VerifyBackupResult> {
    if (flags.verify) {
      if (!flags['secret-key'])
        throw new MigrateError('--verify needs --secret-key', {
          exitCode: EXIT_CODES.badInput,
          suggestion: 'Pass --secret-key with the backup secret key file.',
        })
      const passphrase = process.env.CKAN_MIGRATE_SECRET_KEY_PASSPHRASE
      const result = await verifyBackup({
        file: flags.verify,
        onProgress,
        passphrase: passphrase ? new Secret(passphrase) : undefined,
        pgBin: flags['pg-bin'],
        secretKey: flags['secret-key'],
        signal: this.signal,
      })
      this.log(
        `OK: ${result.file} decrypts intact and holds a readable ${result.dumpFormat} dump of ${result.tables.length} tables (${result.plainBytes} plain bytes, checked in memory).`,
      )
      if (result.checksum === 'no-sidecar')
        this.warn('No sidecar (FILE.json) next to the backup: its SHA-256 could not be compared.')
      return result
    }
    const recipient = flags['recipient-key']
      ? {keyFile: flags['recipient-key']}
      : flags['key-id']
        ? {keyId: flags['key-id']}
        : undefined
    if (!recipient || !flags.dir) {
      throw new MigrateError('backup needs --dir and one of --recipient-key or --key-id', {
        exitCode: EXIT_CODES.badInput,
        suggestion: 'Example: --dir /var/backups/ckan --key-id 8FD98B2183B2C228 (or --verify FILE --secret-key FILE).',
      })
    }
    const ini = flags['ckan-ini'] ? await readCkanIni(flags['ckan-ini']) : undefined
    const {url} = chooseDatabaseUrl({databaseUrl: flags['database-url'], ini})
    const result = await backupDatabase({
      databaseUrl: url,
      dir: flags.dir,
      dryRun: flags['dry-run'],
      onProgress,
      pgBin: flags['pg-bin'],
      recipient,
      signal: this.signal,
      site: effectiveSetting(ini, 'ckan.site_id').value,
    })
    const to = `${result.encryption.keyId}${result.encryption.userIds[0] ? ` (${result.encryption.userIds[0]})` : ''} with ${result.encryption.engine}`
    if (result.dryRun)
      this.log(
        `Dry run: would write ${result.file}, encrypted to ${to}, dumped with ${result.dumpedWith} from PostgreSQL ${result.serverVersion}. Nothing was written.`,
      )
    else
      this.log(
        `Backup written: ${result.file}\n  ${result.bytes} bytes, ${result.tables.length} tables, encrypted to ${to}\n  sha256 ${result.sha256}\n  sidecar ${result.sidecar}`,
      )
    return result
  }

  /** Bytes so far on stderr, only on a terminal and never under --json. */
  private byteProgress(label: 'dumped' | 'off' | 'verified'): ((bytes: number) => void) | undefined {
    if (label === 'off' || !isInteractive()) return undefined
    let last = 0
    return (bytes) => {
      if (Date.now() - last < 250) return
      last = Date.now()
      this.#progressShown = true
      process.stderr.write(`\r${label} ${(bytes / 1_048_576).toFixed(1)} MiB`)
    }
  }
}
