import * as openpgp from 'openpgp'
import {join, resolve} from 'node:path'
import {fileURLToPath} from 'node:url'
import pg from 'pg'

import {CkanApiClient} from '../lib/site/ckan-api-client.js'
import {readCkanIni} from '../lib/site/ckan-ini.js'
import {describeError, EXIT_CODES, MigrateError} from '../lib/errors.js'
import {openRunFolder} from '../lib/run/run-folder.js'
import {writeSecretFile} from '../lib/fs/secret-file.js'
import {type ContinuityProbe as Probe, ContinuityProbe, type ProbeClient, type ProbeStats} from './continuity-probe.js'
import {upgradeSandboxDatabase} from './sandbox-site.js'
import {Secret} from '../lib/secret.js'
import {checkAdoption} from '../lib/workflows/adoption.js'
import {auditSite} from '../lib/workflows/audit.js'
import {backupDatabase, type BackupResult} from '../lib/workflows/backup.js'
import {bundleAccess} from '../lib/workflows/bundle.js'
import {issueTokens} from '../lib/workflows/issue-tokens.js'
import {purgeKeys} from '../lib/workflows/purge-keys.js'
import {reportRun} from '../lib/workflows/report.js'
import {rewriteServiceConfigs} from '../lib/workflows/rewrite-config.js'
import {rotateTokens} from '../lib/workflows/rotate.js'
import {type RunningSandbox, startSandbox} from './start-sandbox.js'
import {verifyTokens} from '../lib/workflows/verify.js'

/**
 * Users the continuity probe calls in one round (the services are called every round): enough
 * that a small site's every user is called every round, few enough that a round on a large site
 * takes seconds, not the length of the step it watches. Rounds take the users in turn.
 */
export const PROBE_USERS_PER_ROUND = 1000

/**
 * Calls the continuity probe has in flight at once: one, as a person's script calls. It proves
 * every credential keeps working; it is not a load test. On PGlite (one session serving every
 * request in turn) four probe calls always in flight took 60–80 % of the site's answers during
 * issue-tokens and verify (25,849 probe calls beside 7,349 tokens at 20,000 users), and the
 * steps' adaptive concurrency shrank under the latency they caused (docs/emulator.md, "Performance").
 */
export const PROBE_CONCURRENCY = 1

/** The certificate the sandbox's bundles carry (the emulator speaks plain HTTP). */
export const SANDBOX_SERVER_CERT = fileURLToPath(new URL('../../assets/sandbox-server.cert', import.meta.url))

export type RehearsalOptions = {
  /** A real PostgreSQL server to run the site on instead of PGlite. */
  databaseUrl?: string
  dir: string
  /** Called when a step starts and when it ends. */
  onStep?: (event: {name: string; step?: RehearsalStep}) => void
  /** People the continuity probe calls per round (default PROBE_USERS_PER_ROUND); tests lower it to act out a large site. */
  probeUsersPerRound?: number
  seed: string
  signal?: AbortSignal
  users: number
}

export type RehearsalStep = {
  /** What this step produced, in one line (counts, verdicts; never a secret). */
  detail: string
  durationMs: number
  /** What a correct migration shows at this step. */
  expected: string
  name: string
  ok: boolean
}

export type RehearsalResult = {
  ckanUrl: string
  /** Every credential in use stayed working: probe.failures === 0. */
  continuity: ProbeStats
  ok: boolean
  paths: {
    auditCsv: string
    backup: null | string
    bundles: null | string
    ckanIni: string
    passwords: null | string
    /** The readiness page of the first audit (audit --html). */
    readinessPage: null | string
    report: null | string
    runFolder: string
    /** The run's page, written at the end (report --html). */
    runPage: null | string
    sandboxDir: string
  }
  /** Why the report has fewer rows than the site has users: who issue-tokens selected. */
  selection: {
    /** Rows of the issue-tokens report: every legacy-key holder, issued or skipped with its reason. */
    reportRows: number
    /** Users in the site's user table (the seeded people, the admin and the site user). */
    siteUsers: number
  }
  steps: RehearsalStep[]
}

type Step = {detail: string; ok: boolean}

/**
 * `sandbox --run`: the whole runbook on an embedded CKAN 2.9 site, end to end — backup, audit
 * (NOT READY), fix the blockers only an admin can fix, rewrite-config (dry run, then for real),
 * issue-tokens (dry run, then for real), verify, bundle, audit again (READY), then the emulator
 * becomes 2.10 and 2.11 over the same database and ckan.ini, where every issued token must still
 * work and every legacy key must be refused, then purge-keys, and a year later a rotation
 * (successors, services switched, fresh bundles; then --finish). An adoption check gates the
 * upgrade as in the runbook. A continuity probe keeps
 * calling the site with every credential in use the whole time and counts failures.
 */
export async function rehearseMigration(options: RehearsalOptions): Promise<RehearsalResult> {
  const dir = resolve(options.dir)
  const stamp = new Date().toISOString().replaceAll(/[:.]/g, '-')
  const runFolder = join(dir, 'runs', stamp)
  const auditCsv = join(dir, 'reports', `audit-before-${stamp}.csv`)
  const steps: RehearsalStep[] = []
  let sandbox: RunningSandbox | undefined
  let sql: pg.Client | undefined
  let probe: Probe | undefined
  const paths: RehearsalResult['paths'] = {
    auditCsv,
    backup: null,
    bundles: null,
    ckanIni: join(dir, 'ckan.ini'),
    passwords: null,
    readinessPage: null,
    report: null,
    runFolder,
    runPage: null,
    sandboxDir: dir,
  }
  const selection: RehearsalResult['selection'] = {reportRows: 0, siteUsers: 0}

  const step = async (name: string, expected: string, body: () => Promise<Step>): Promise<Step> => {
    if (options.signal?.aborted) throw new MigrateError('Interrupted', {exitCode: EXIT_CODES.interrupted})
    options.onStep?.({name})
    probe?.setPhase(name)
    const started = performance.now()
    let outcome: Step
    try {
      outcome = await body()
    } catch (error) {
      outcome = {detail: `failed: ${describeError(error)}`, ok: false}
    }
    const record = {...outcome, durationMs: Math.round(performance.now() - started), expected, name}
    steps.push(record)
    options.onStep?.({name, step: record})
    return outcome
  }

  try {
    // A site upgraded from 2.8, as most 2.9 sites with legacy keys are: no api_token.* lines, so
    // tokens are signed with beaker.session.secret and the secret must be pinned before 2.11.
    const siteStep = 'start the site'
    options.onStep?.({name: siteStep})
    const siteStarted = performance.now()
    sandbox = await startSandbox({
      ckanVersion: '2.9',
      databaseUrl: options.databaseUrl,
      dir,
      port: 0,
      seed: options.seed,
      site: {apiTokenLines: false},
      users: options.users,
    })
    const site = sandbox.site
    const siteRecord: RehearsalStep = {
      detail: `${site.engine === 'pglite' ? 'PGlite' : 'PostgreSQL'}: CKAN 2.9 schema, ${options.users} users seeded, emulator at ${site.ckanUrl}`,
      durationMs: Math.round(performance.now() - siteStarted),
      expected: 'a seeded CKAN 2.9 site answering on 127.0.0.1',
      name: siteStep,
      ok: true,
    }
    steps.push(siteRecord)
    options.onStep?.({name: siteStep, step: siteRecord})
    paths.ckanIni = site.ckanIni
    sql = new pg.Client({connectionString: site.databaseUrl})
    sql.on('error', () => {})
    await sql.connect()
    const db = sql
    const ckanUrl = new URL(site.ckanUrl)

    // The backup first: it is step one of the runbook, and on PGlite the dump tool resets
    // prepared statements, which must happen before any client depends on them.
    const keyFiles = await makeBackupKeys(dir)
    let backup: BackupResult | undefined
    await step('backup', 'an encrypted dump of the 2.9 database', async () => {
      const common = {dir: join(dir, 'backups'), recipient: {keyFile: keyFiles.publicKey}, site: site.siteUserName}
      backup = site.backupEmbedded
        ? await site.backupEmbedded(common)
        : await backupDatabase({...common, databaseUrl: site.databaseUrl})
      paths.backup = backup.file
      return {
        detail: `${backup.file} (${backup.bytes} bytes, ${backup.tables.length} tables, ${backup.dumpFormat})`,
        ok: backup.bytes !== null,
      }
    })

    const usersPerRound = options.probeUsersPerRound ?? PROBE_USERS_PER_ROUND
    probe = new ContinuityProbe({ckanUrl: site.ckanUrl, concurrency: PROBE_CONCURRENCY, usersPerRound})
    const users = await keyHolders(db, site.siteUserName)
    const siteKey = await siteUserKey(db, site.siteUserName)
    const serviceClients = (xloader: Secret | undefined, datapusher: Secret | undefined): ProbeClient[] => [
      {credential: xloader ?? siteKey, kind: 'service', label: 'xloader', userName: site.siteUserName},
      {credential: datapusher ?? siteKey, kind: 'service', label: 'datapusher', userName: site.siteUserName},
    ]
    let services = serviceClients(undefined, undefined)
    let people: ProbeClient[] = users.map((user) => ({
      credential: user.key,
      kind: 'user',
      label: user.name,
      userName: user.name,
    }))
    probe.setClients([...people, ...services])
    await step('probe before the migration', 'every credential called answers 200', async () => {
      await probe!.round()
      const stats = probe!.stats()
      return {
        detail: `${stats.calls} calls (${people.length} key holders, ${usersPerRound} a round in turn, and 2 services), ${stats.failures} failures`,
        ok: stats.failures === 0,
      }
    })
    probe.start()

    await step('audit', 'NOT READY: blockers for 2.10/2.11', async () => {
      const audit = await auditSite({
        ckanIniPath: site.ckanIni,
        ckanUrl,
        csvPath: auditCsv,
        htmlPath: join(dir, 'reports', `readiness-${stamp}.html`),
      })
      paths.readinessPage = audit.html?.path ?? null
      const ids = audit.findings.filter((finding) => finding.severity === 'blocker').map((finding) => finding.id)
      return {
        detail: `${audit.verdict.status}, ${audit.verdict.blockers} blockers: ${ids.join(', ')}`,
        ok: audit.verdict.status === 'NOT READY',
      }
    })

    await step(
      'fix duplicate emails',
      'no two active users share an email (an admin decision; here: renamed)',
      async () => {
        const fixed = await fixDuplicateEmails(db)
        return {detail: `${fixed} addresses made unique`, ok: true}
      },
    )

    // The runbook's rewrite-config: the site's ckan.ini, the services its plugins name, the run folder.
    const rewriteOptions = {
      alsoPaths: [],
      api: {apiKeyFile: site.apiKeyFile, ckanUrl},
      chainTarget: 'defining' as const,
      ckanIniPath: site.ckanIni,
      envFilePaths: [],
      fixHeader: false,
      out: runFolder,
      services: [],
      tokenFiles: [],
      tokenLifetimeDays: 365,
    }
    await step('rewrite-config --dry-run', 'a redacted diff, no file changed, no token created', async () => {
      const before = await tokenCount(db)
      const plan = await rewriteServiceConfigs({...rewriteOptions, dryRun: true})
      const after = await tokenCount(db)
      const changes = plan.files.reduce((total, file) => total + file.changes.length, 0)
      return {
        detail: `${changes} settings would change; services ${plan.services.map((service) => service.service).join(', ')}`,
        ok: before === after && changes > 0,
      }
    })

    await step('rewrite-config', 'service tokens in ckan.ini, JWT secret pinned; CKAN restarted', async () => {
      const result = await rewriteServiceConfigs({...rewriteOptions, dryRun: false})
      await site.emulator.loadConfig()
      const ini = await readCkanIni(site.ckanIni)
      const xloader = ini.get('ckanext.xloader.api_token')
      const datapusher = ini.get('ckan.datapusher.api_token')
      services = serviceClients(
        xloader ? new Secret(xloader) : undefined,
        datapusher ? new Secret(datapusher) : undefined,
      )
      probe!.setClients([...people, ...services])
      return {
        detail: `${result.services.map((service) => `${service.service}: ${service.tokenSource}`).join(', ')}; JWT secret pinned: ${result.secretPinning ? result.secretPinning.keys.join(' and ') : 'already'}`,
        ok: Boolean(xloader && datapusher),
      }
    })

    await step('issue-tokens --dry-run', 'the plan; no token created', async () => {
      const before = await tokenCount(db)
      const plan = await issueTokens({
        apiKeyFile: site.apiKeyFile,
        ckanIniPath: site.ckanIni,
        ckanUrl,
        concurrency: 'auto',
        dryRun: true,
        out: runFolder,
      })
      return {
        detail: `${plan.counts.planned} planned, ${plan.counts.skipped} skipped`,
        ok: plan.counts.planned > 0 && before === (await tokenCount(db)),
      }
    })

    let issued = 0
    await step('issue-tokens', 'exactly one token per selected user, stored in the run folder', async () => {
      const result = await issueTokens({
        apiKeyFile: site.apiKeyFile,
        ckanIniPath: site.ckanIni,
        ckanUrl,
        concurrency: 'auto',
        dryRun: false,
        out: runFolder,
      })
      paths.report = result.reportPath
      issued = result.counts.issued
      selection.reportRows = result.counts.issued + result.counts.skipped + result.counts.failed
      selection.siteUsers = await userCount(db)
      return {
        detail: `${result.counts.issued} issued, ${result.counts.skipped} skipped, ${result.counts.failed} failed`,
        ok: result.counts.failed === 0 && result.counts.issued > 0,
      }
    })

    await step('verify', 'every token of the run works, each used alone', async () => {
      const result = await verifyTokens({ckanIniPath: site.ckanIni, concurrency: 'auto', legacy: false, out: runFolder})
      return {
        detail: `${result.counts.ok}/${result.counts.tokens} tokens work`,
        ok: result.counts.failed === 0 && result.counts.ok >= issued,
      }
    })

    await step('bundle', 'an AES-encrypted .dcor-access bundle per person; passwords apart', async () => {
      const result = await bundleAccess({
        database: {ckanIni: site.ckanIni},
        dryRun: false,
        encryption: 'aes256',
        force: false,
        out: runFolder,
        serverCert: {file: SANDBOX_SERVER_CERT},
        suffix: '.dcor-access',
      })
      paths.bundles = result.bundleDir
      paths.passwords = result.passwordsFile
      // Bundles delivered: from now on every person's scripts use their token, not their key.
      const run = await openRunFolder(runFolder, {create: false})
      const tokens = new Map(
        (await run.readTokens())
          .filter((token) => token.source === 'issue-tokens')
          .map((token) => [token.userName, token.token]),
      )
      people = people.map((client) => ({...client, credential: tokens.get(client.userName) ?? client.credential}))
      probe!.setClients([...people, ...services])
      const switched = people.filter((client) => tokens.has(client.userName)).length
      return {
        detail: `${result.counts.written} bundles written; ${switched}/${people.length} clients switched to their token`,
        ok: switched === people.length,
      }
    })

    await step('audit again', 'READY', async () => {
      const audit = await auditSite({ckanIniPath: site.ckanIni, ckanUrl})
      const ids = audit.findings.filter((finding) => finding.severity === 'blocker').map((finding) => finding.id)
      return {
        detail: `${audit.verdict.status}${ids.length > 0 ? `: ${ids.join(', ')}` : ''} (${audit.verdict.warnings} warnings)`,
        ok: audit.verdict.status === 'READY',
      }
    })

    await step(
      'adoption',
      'every service, and every person whose client called CKAN since the switch, has used the new token',
      async () => {
        await probe!.round()
        // The probe stands for the people's clients. On a large site its rounds reach at most
        // USERS_PER_ROUND people each, so by now it has called only some of them: those must all
        // count as having used their token, and `--require 95%` applies once it has called everyone.
        const people = probe!.people()
        const everyone = people.called >= people.total
        const result = await checkAdoption({
          ckanIniPath: site.ckanIni,
          out: runFolder,
          requirePercent: everyone ? 95 : undefined,
        })
        const reached = everyone
          ? ''
          : ` The probe has called ${people.called} of ${people.total} people since the switch; each of them counts.`
        return {
          detail: `${result.summary} Legacy keys still present: ${result.counts.legacyKeyPresent}.${reached}`,
          ok:
            result.counts.servicesUsed === result.counts.services &&
            (everyone ? Boolean(result.required?.met) : result.counts.used >= people.called),
        }
      },
    )

    for (const version of ['2.10', '2.11'] as const) {
      await step(`upgrade to ${version}`, 'every issued token works, every legacy key is refused', async () => {
        await probe!.round()
        await upgradeSandboxDatabase(db, version)
        await site.emulator.setVersion(version)
        const result = await verifyTokens({
          ckanIniPath: site.ckanIni,
          concurrency: 'auto',
          legacy: true,
          out: runFolder,
        })
        await probe!.round()
        return {
          detail: `${result.counts.ok}/${result.counts.tokens} tokens work, ${result.counts.legacyStillAccepted} legacy keys still accepted`,
          ok: result.counts.failed === 0 && result.counts.legacyStillAccepted === 0 && result.counts.unchecked === 0,
        }
      })
    }

    await step('purge-keys', 'legacy keys cleared for every verified user; the backup checked first', async () => {
      const result = await purgeKeys({
        all: false,
        backup: paths.backup ? {file: paths.backup, maxAgeHours: 24} : 'none',
        ckanIniPath: site.ckanIni,
        confirm29: false,
        databaseUrl: site.databaseUrl,
        dryRun: false,
        includeSiteUser: false,
        out: runFolder,
      })
      await probe!.round()
      return {
        detail: `${result.purged} keys cleared; site user ${result.siteUser.protected ? 'kept' : 'cleared'}`,
        ok: result.purged > 0,
      }
    })

    // A year later: rotation on 2.11. The admin's legacy key is gone; it uses a token of its own
    // (not one of the run, which rotate --finish would revoke).
    const adminTokenFile = join(dir, 'admin-token')
    let successorsUsed = 0
    await step('rotate', 'a successor per token; services switched in ckan.ini; fresh bundles', async () => {
      const run = await openRunFolder(runFolder, {create: false})
      const tokens = await run.readTokens()
      const own = tokens.find((token) => token.userName === site.adminName && token.source === 'issue-tokens')
      if (!own) return {detail: `${site.adminName} has no token of the run`, ok: false}
      // In the header the run settled on (token-header.json), as the run's own commands send it.
      const headerName = await run.tokenHeader()
      const adminToken = await new CkanApiClient({ckanUrl, credential: own.token, headerName}).createApiToken({
        name: 'ckan-migrate sandbox admin',
        user: site.adminName,
      })
      await writeSecretFile(adminTokenFile, `${adminToken.token.reveal()}\n`)
      const result = await rotateTokens({
        all: true,
        apiKeyFile: adminTokenFile,
        concurrency: 4,
        dryRun: false,
        finish: false,
        out: runFolder,
      })
      // The services restart with the new ckan.ini; the people open their fresh bundles.
      const ini = await readCkanIni(site.ckanIni)
      const xloader = ini.get('ckanext.xloader.api_token')
      const datapusher = ini.get('ckan.datapusher.api_token')
      services = serviceClients(
        xloader ? new Secret(xloader) : undefined,
        datapusher ? new Secret(datapusher) : undefined,
      )
      const successors = new Map(
        (await run.readTokens())
          .filter((token) => token.predecessorJti && token.source === 'issue-tokens')
          .map((token) => [token.userName, token.token]),
      )
      people = people.map((client) => ({...client, credential: successors.get(client.userName) ?? client.credential}))
      probe!.setClients([...people, ...services])
      await probe!.round()
      // The people the probe has called with their successor so far (all of them on a small site).
      const called = probe!.people().calledNames
      successorsUsed =
        people.filter((client) => successors.has(client.userName) && called.has(client.userName)).length +
        services.length
      return {
        detail: `${result.counts.rotated ?? 0} successors, ${result.configsUpdated.length} config files switched, ${result.bundlesWritten} fresh bundles`,
        ok: (result.counts.failed ?? 0) === 0 && result.configsUpdated.length > 0 && result.bundlesWritten > 0,
      }
    })

    await step('rotate --finish', 'every predecessor revoked once its successor was used', async () => {
      const result = await rotateTokens({
        all: false,
        apiKeyFile: adminTokenFile,
        concurrency: 4,
        dryRun: false,
        finish: true,
        out: runFolder,
      })
      await probe!.round()
      const revoked = result.counts.predecessorRevoked ?? 0
      return {
        detail: `${revoked} predecessors revoked (${successorsUsed} successors in use), ${result.counts.held ?? 0} held until the grace period ends`,
        ok: revoked >= successorsUsed && (result.counts.failed ?? 0) === 0,
      }
    })

    await step('report --html', "the run's page names no unfinished command", async () => {
      const report = await reportRun({htmlPath: join(dir, 'reports', `run-${stamp}.html`), runDir: runFolder})
      paths.runPage = report.html?.path ?? null
      return {
        detail: `${report.state}: ${report.tokens.issued} tokens, ${report.verify.ok}/${report.verify.checked} verified`,
        ok: report.state === 'finished',
      }
    })

    await probe.stop()
    const continuity = probe.stats()
    return {
      ckanUrl: site.ckanUrl,
      continuity,
      ok: steps.every((entry) => entry.ok) && continuity.failures === 0,
      paths,
      selection,
      steps,
    }
  } finally {
    await probe?.stop()
    await sql?.end().catch(() => {})
    await sandbox?.stop()
  }
}

/** A throwaway OpenPGP key pair for the sandbox's backup (never for a real site). */
async function makeBackupKeys(dir: string): Promise<{privateKey: string; publicKey: string}> {
  const {privateKey, publicKey} = await openpgp.generateKey({
    curve: 'curve25519Legacy',
    format: 'armored',
    type: 'ecc',
    userIDs: [{name: 'ckan-migrate sandbox backup (throwaway)'}],
  })
  const paths = {privateKey: join(dir, 'backup-key.sec.asc'), publicKey: join(dir, 'backup-key.pub.asc')}
  await writeSecretFile(paths.publicKey, publicKey)
  await writeSecretFile(paths.privateKey, privateKey)
  return paths
}

/** The people whose scripts use a legacy key today: active, a key of their own, not the site user. */
async function keyHolders(db: pg.Client, siteUserName: string): Promise<Array<{key: Secret; name: string}>> {
  // Keys held by one user only, counted in one pass (a count per user would scan "user" once for
  // each, as CKAN has no index on apikey).
  const {rows} = await db.query<{apikey: string; name: string}>(
    `SELECT name, apikey FROM (SELECT name, apikey, state, count(*) OVER (PARTITION BY apikey) AS holders
                               FROM "user" WHERE apikey IS NOT NULL) u
     WHERE state = 'active' AND name <> $1 AND holders = 1
     ORDER BY name`,
    [siteUserName],
  )
  return rows.map((row) => ({key: new Secret(row.apikey), name: row.name}))
}

async function siteUserKey(db: pg.Client, siteUserName: string): Promise<Secret> {
  const {rows} = await db.query<{apikey: null | string}>('SELECT apikey FROM "user" WHERE name = $1', [siteUserName])
  if (!rows[0]?.apikey)
    throw new MigrateError('The sandbox site user has no legacy key', {exitCode: EXIT_CODES.unexpected})
  return new Secret(rows[0].apikey)
}

async function userCount(db: pg.Client): Promise<number> {
  const {rows} = await db.query<{n: number}>('SELECT count(*)::int AS n FROM "user"')
  return rows[0]!.n
}

async function tokenCount(db: pg.Client): Promise<number> {
  const {rows} = await db.query<{n: number}>('SELECT count(*)::int AS n FROM api_token')
  return rows[0]!.n
}

/** Gives every active user but the first of each shared address its own address. */
async function fixDuplicateEmails(db: pg.Client): Promise<number> {
  const result = await db.query(
    `UPDATE "user" u SET email = split_part(u.email, '@', 1) || '+' || u.id || '@' || split_part(u.email, '@', 2)
     FROM (SELECT id, row_number() OVER (PARTITION BY email ORDER BY created, id) AS n
           FROM "user" WHERE state = 'active' AND email IS NOT NULL) d
     WHERE u.id = d.id AND d.n > 1`,
  )
  return result.rowCount ?? 0
}
