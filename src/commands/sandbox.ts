import {Flags} from '@oclif/core'

import {MigrateCommand} from '../lib/cli/migrate-command.js'
import {CKAN_VERSIONS, type CkanVersion} from '../lib/site/ckan-version.js'
import {parseFaultSettings} from '../sandbox/faults.js'
import {type RehearsalResult, rehearseMigration} from '../sandbox/rehearse-migration.js'
import {type SandboxResult, startSandbox, waitUntilInterrupted} from '../sandbox/start-sandbox.js'
import {EXIT_CODES} from '../lib/errors.js'

export default class Sandbox extends MigrateCommand<RehearsalResult | SandboxResult> {
  static override description = `Starts a CKAN-shaped site on this machine to rehearse on: an embedded PostgreSQL (PGlite, or a new database on --database-url's server) with the CKAN schema of --ckan-version, --users seeded users (legacy keys, pending and deleted users, hostile names, existing tokens, harvest sources), and an emulator of CKAN's action API on 127.0.0.1. Writes into --dir a ckan.ini in CKAN's own format, a 0600 file with the admin sysadmin's credential (its legacy key on 2.9, an API token on 2.10/2.11) and, once the site answers, sandbox.json. Runs until Ctrl-C or SIGTERM, then stops cleanly; the database lives only while it runs.`
  static override examples = [
    '<%= config.bin %> <%= command.id %> --run',
    '<%= config.bin %> <%= command.id %> --run --users 20000 --dir /tmp/rehearsal --json',
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --dir /tmp/rehearsal --users 50000 --ckan-version 2.9 --port 5000',
    '<%= config.bin %> <%= command.id %> --faults status503=0.05,latencyMs=20,jitterMs=30,seed=1',
    '<%= config.bin %> <%= command.id %> --database-url postgresql://postgres@127.0.0.1:5432/postgres --users 200000',
  ]
  static override flags = {
    'ckan-version': Flags.string({
      default: '2.9',
      options: [...CKAN_VERSIONS],
      summary: 'CKAN version the site is and answers as.',
    }),
    'database-url': Flags.string({
      summary:
        'A real PostgreSQL server (its maintenance-database URL) to create the sandbox database on, instead of PGlite. The database is dropped on exit.',
    }),
    dir: Flags.string({
      default: '.sandbox',
      summary: 'Folder for ckan.ini, the credential file and sandbox.json (created 0700).',
    }),
    faults: Flags.string({
      summary:
        'Fault injection for the emulator: JSON or key=value,… (status500, status502, status503, status429, retryAfterSeconds, resetBeforeWrite, resetAfterWrite, hangAfterCommit, latencyMs, jitterMs, actions, seed; capacity: workers, backlog, serviceMs, serviceJitterMs, overflowStatus). See docs/emulator.md.',
    }),
    run: Flags.boolean({
      default: false,
      exclusive: ['faults', 'port'],
      summary:
        'Rehearse the whole runbook on a fresh 2.9 site and exit: backup, audit, rewrite-config, issue-tokens, verify, bundle, audit, upgrade to 2.10 and 2.11, purge-keys, with a continuity probe.',
    }),
    port: Flags.integer({
      default: 0,
      max: 65_535,
      min: 0,
      summary: 'Port of the emulator on 127.0.0.1; 0 picks a free one.',
    }),
    seed: Flags.string({
      default: 'sandbox',
      summary: 'Seed of the generated users: the same seed gives the same site.',
    }),
    users: Flags.integer({
      default: 2000,
      min: 11,
      summary: 'Users to seed, including the site user, admin and the hostile-name users.',
    }),
  }
  static override summary =
    'Run a seeded CKAN 2.9/2.10/2.11 sandbox site (database + action-API emulator) until interrupted; --run rehearses the whole migration on it.'

  async run(): Promise<RehearsalResult | SandboxResult> {
    const {flags} = await this.parse(Sandbox)
    if (flags.run) return this.rehearse(flags)
    const faults = flags.faults === undefined ? undefined : parseFaultSettings(flags.faults)
    const sandbox = await startSandbox({
      ckanVersion: flags['ckan-version'] as CkanVersion,
      databaseUrl: flags['database-url'],
      dir: flags.dir,
      faults,
      onStep: (step) => {
        if (!this.quiet) this.logToStderr(`${step}…`)
      },
      port: flags.port,
      seed: flags.seed,
      users: flags.users,
    })
    try {
      const {result} = sandbox
      const credential =
        result.ckanVersion === '2.9' ? "the admin sysadmin's legacy API key" : 'an API token of the admin sysadmin'
      this.log(
        `CKAN ${result.ckanVersion} sandbox is running (${result.engine === 'pglite' ? 'PGlite' : 'PostgreSQL'}, ${result.users} users).`,
      )
      this.log(`  Models:        ${result.model}`)
      this.log(`  CKAN URL:      ${result.ckanUrl}`)
      this.log(`  ckan.ini:      ${result.ckanIni}`)
      this.log(`  Database URL:  ${result.databaseUrl}`)
      this.log(`  API key file:  ${result.apiKeyFile} (${credential}; not shown)`)
      this.log(`  sandbox.json:  ${result.sandboxFile}`)
      if (faults) this.log(`  Faults:        ${JSON.stringify(faults)}`)
      if (!this.quiet) this.logToStderr('Press Ctrl-C to stop.')
      await waitUntilInterrupted(this.signal)
      if (!this.quiet) this.logToStderr('Stopping the sandbox…')
      return result
    } finally {
      await sandbox.stop()
    }
  }

  private async rehearse(flags: {
    'ckan-version': string
    'database-url'?: string
    dir: string
    json?: boolean
    seed: string
    users: number
  }): Promise<RehearsalResult> {
    if (flags['ckan-version'] !== '2.9')
      this.warn(
        '--run always starts from a CKAN 2.9 site (it upgrades it to 2.10 and 2.11 itself); --ckan-version is ignored.',
      )
    const {quiet} = this
    if (!quiet)
      this.log(
        `Rehearsing the upgrade runbook on an embedded CKAN 2.9 site with ${flags.users} users (${flags['database-url'] ? 'PostgreSQL' : 'PGlite'}).`,
      )
    const result = await rehearseMigration({
      databaseUrl: flags['database-url'],
      dir: flags.dir,
      onStep: ({name, step}) => {
        if (quiet) return
        if (step)
          this.log(
            `  ${step.ok ? '✓' : '✗'} ${name.padEnd(26)} ${(step.durationMs / 1000).toFixed(1).padStart(6)} s  ${step.detail}${step.ok ? '' : `  (expected: ${step.expected})`}`,
          )
        else if (process.stderr.isTTY && !process.env.CI) this.logToStderr(`  … ${name}`)
      },
      seed: flags.seed,
      signal: this.signal,
      users: flags.users,
    })
    const {continuity, paths} = result
    this.log('')
    this.log(
      `Continuity probe: ${continuity.calls} calls in ${continuity.rounds} rounds with every credential in use (each person's key, then token; each service's configured credential): ${continuity.failures} failures.`,
    )
    for (const failure of continuity.failureSamples.slice(0, 5))
      this.log(`  ✗ ${failure.kind} ${failure.label} during "${failure.phase}": ${failure.status}`)
    this.log(`  Run folder:    ${paths.runFolder}`)
    if (paths.report) {
      const {reportRows, siteUsers} = result.selection
      this.log(`  Report (CSV):  ${paths.report}`)
      this.log(
        `                 ${reportRows} rows for ${siteUsers} users: issue-tokens selects only the users holding a legacy key by default (the others have nothing to migrate; --users picks any), and lists the ones it skipped with the reason.`,
      )
    }
    if (paths.readinessPage) this.log(`  Readiness:     ${paths.readinessPage} (audit --html, before the migration)`)
    if (paths.runPage) this.log(`  Run page:      ${paths.runPage} (report --html)`)
    if (paths.bundles) this.log(`  Bundles:       ${paths.bundles}`)
    if (paths.passwords) this.log(`  Passwords:     ${paths.passwords} (deliver apart from the bundles)`)
    if (paths.backup)
      this.log(`  Backup:        ${paths.backup} (key pair: ${paths.sandboxDir}/backup-key.*.asc, sandbox only)`)
    this.log(`  ckan.ini:      ${paths.ckanIni}`)
    this.log(
      result.ok
        ? 'Every step did what the runbook promises, and no client lost access.'
        : 'The rehearsal found problems: see the ✗ lines above.',
    )
    if (!result.ok) this.setExitCode(EXIT_CODES.verificationFailed)
    return result
  }
}
