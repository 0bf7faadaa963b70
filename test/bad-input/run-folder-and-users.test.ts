import {chmod, cp, mkdir, readFile, rm, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {PROJECT_ROOT, runCli} from '../helpers/run-cli.js'
import {issueTokensArgs, querySite as query} from '../helpers/site-commands.js'
import {startTestSite, type TestSite} from '../helpers/test-site.js'
import {exists, expectRefused, removeFolder, snapshotFolder, storedSecrets, temporaryFolder} from './support.js'

/** Users and their legacy keys and tokens: what a refused command must leave as it was. */
async function databaseState(site: TestSite): Promise<string> {
  const users = await query(site, `SELECT id, name, state, apikey FROM "user" ORDER BY id`)
  const tokens = await query(site, `SELECT id, user_id FROM api_token ORDER BY id`)
  return JSON.stringify({tokens, users})
}

const SANDBOX_CERT = join(PROJECT_ROOT, 'assets/sandbox-server.cert')

describe('bad input: run folders, user lists, bundles, configs and purges (CKAN 2.9)', () => {
  let site: TestSite
  let dir: string
  let run: string
  let secrets: string[]
  let runSnapshot: Record<string, string>
  const issue = (out: string, ...extra: string[]) => issueTokensArgs(site, out, ...extra)

  beforeAll(async () => {
    site = await startTestSite({autoStop: false, users: 30, version: '2.9'})
    dir = await temporaryFolder('ckan-migrate-bad-', {autoRemove: false})
    run = join(dir, 'run')
    const issued = await runCli(issue(run, '--limit', '3'))
    expect(issued.exitCode, issued.stdout).toBe(0)
    secrets = [site.adminCredential.reveal(), ...(await storedSecrets(run))]
    expect(secrets.length).toBe(7)
    runSnapshot = await snapshotFolder(run)
  })
  afterAll(async () => {
    await site?.stop()
    await removeFolder(dir)
  })

  /** Nothing lost: the run folder still holds exactly what it held, its tokens included. */
  const expectRunUnchanged = async () => expect(await snapshotFolder(run)).toEqual(runSnapshot)

  it('another site’s run folder as --out', async () => {
    const other = await startTestSite({seed: 'another-site', users: 15, version: '2.9'})
    await expectRefused(
      [
        'issue-tokens',
        '--ckan-url',
        other.ckanUrl,
        '--api-key-file',
        other.apiKeyFile,
        '--ckan-ini',
        other.ckanIni,
        '--out',
        run,
        '--dry-run',
      ],
      {
        code: 'runConflict',
        message: /The run folder .* belongs to another site \(http:\/\/127\.0\.0\.1:\d+, site user default\)/,
        secrets: [...secrets, other.adminCredential.reveal()],
      },
    )
    await expectRunUnchanged()
  })

  it('an --out folder that holds other files', async () => {
    const folder = join(dir, 'documents')
    await mkdir(folder)
    await writeFile(join(folder, 'notes.txt'), 'keep me')
    await expectRefused(issue(folder), {
      code: 'runConflict',
      message: /--out .*documents already holds other files and is not a ckan-migrate run folder/,
      secrets,
    })
    expect(await snapshotFolder(folder)).toEqual({'notes.txt': expect.any(String)})
    expect(await readFile(join(folder, 'notes.txt'), 'utf8')).toBe('keep me')
  })

  it('--out that is a regular file', async () => {
    await writeFile(join(dir, 'a-file'), 'x')
    await expectRefused(issue(join(dir, 'a-file')), {
      code: 'badInput',
      message: /--out .*a-file is a file, not a folder$/,
    })
    expect(await readFile(join(dir, 'a-file'), 'utf8')).toBe('x')
  })

  it('--out under a regular file (cannot be created: ENOTDIR, even for root)', async () => {
    await writeFile(join(dir, 'b-file'), 'x')
    await expectRefused(issue(join(dir, 'b-file', 'run')), {
      code: 'badInput',
      message: /--out .*b-file\/run cannot be created: a part of its path is a file, not a folder$/,
    })
    expect(await readFile(join(dir, 'b-file'), 'utf8')).toBe('x')
  })

  it('a run folder in use by another ckan-migrate (a live lock)', async () => {
    // pid 1 is always alive: the lock looks held by a running issue-tokens.
    await writeFile(
      join(run, 'lock'),
      JSON.stringify({command: 'issue-tokens', pid: 1, since: new Date().toISOString()}),
      {mode: 0o600},
    )
    try {
      await expectRefused(issue(run, '--limit', '3'), {
        code: 'runConflict',
        message: /The run folder .* is in use by issue-tokens \(pid 1\)/,
        secrets,
      })
      await expectRefused(['verify', '--out', run, '--ckan-url', site.ckanUrl], {
        code: 'runConflict',
        message: /is in use by issue-tokens \(pid 1\)/,
        secrets,
      })
    } finally {
      await rm(join(run, 'lock'))
    }
    await expectRunUnchanged()
  })

  it('hostile names in --users that the site does not have: unknown users, nothing created', async () => {
    const before = await databaseState(site)
    const out = join(dir, 'hostile-run')
    await expectRefused(issue(out, '--users', `../../etc/shadow,';DROP-TABLE-"user";--,=cmd|'/C-calc'!A0`), {
      code: 'badInput',
      message:
        /^3 users are not in the CKAN database: "\.\.\/\.\.\/etc\/shadow", "';DROP-TABLE-\\"user\\";--", "=cmd\|'\/C-calc'!A0"$/,
      secrets,
    })
    expect(await exists(out)).toBe(false)
    expect(await exists('/etc/shadow-run')).toBe(false)
    expect(await databaseState(site)).toBe(before)
  })

  it('unknown users in --users on an existing run: the run is untouched', async () => {
    await expectRefused(issue(run, '--users', 'no-such-user'), {
      code: 'badInput',
      message: /^1 user is not in the CKAN database: "no-such-user"$/,
      secrets,
    })
    await expectRunUnchanged()
  })

  it('a --users-file that does not exist', async () => {
    await expectRefused(issue(join(dir, 'users-file-run'), '--users-file', join(dir, 'no-users.txt')), {
      code: 'badInput',
      message: /Cannot read --users-file .*no-users\.txt: it does not exist/,
    })
    expect(await exists(join(dir, 'users-file-run'))).toBe(false)
  })

  it('a --users-file that is not text (a NUL byte): refused before the database sees it', async () => {
    const file = join(dir, 'binary-users.txt')
    await writeFile(file, 'alice\nbo\u0000b\n')
    await expectRefused(issue(join(dir, 'binary-users-run'), '--users-file', file), {
      code: 'badInput',
      message: /binary-users\.txt holds a control character in its name number 2/,
      secrets,
    })
    expect(await exists(join(dir, 'binary-users-run'))).toBe(false)
  })

  it('verify on a run folder whose tokens.jsonl was edited (a jti that is not text): refused, untouched', async () => {
    const copy = join(dir, 'edited-run')
    await cp(run, copy, {recursive: true})
    const tokensPath = join(copy, 'tokens.jsonl')
    const lines = (await readFile(tokensPath, 'utf8')).trimEnd().split('\n')
    lines[0] = JSON.stringify({...JSON.parse(lines[0]!), jti: 123})
    await writeFile(tokensPath, `${lines.join('\n')}\n`)
    const before = await snapshotFolder(copy)
    await expectRefused(['verify', '--out', copy, '--ckan-url', site.ckanUrl], {
      code: 'badInput',
      message: /edited-run\/tokens\.jsonl holds an entry that is not a token ckan-migrate wrote \(bad jti\)$/,
      secrets,
    })
    expect(await snapshotFolder(copy)).toEqual(before)
  })

  it('verify and revoke on a folder that is not a run folder', async () => {
    const folder = join(dir, 'not-a-run')
    await expectRefused(['verify', '--out', folder, '--ckan-url', site.ckanUrl], {
      code: 'badInput',
      message: /not-a-run is not a ckan-migrate run folder \(no run\.json\)/,
    })
    await expectRefused(['revoke', '--out', folder, '--ckan-url', site.ckanUrl, '--api-key-file', site.apiKeyFile], {
      code: 'badInput',
      message: /not-a-run is not a ckan-migrate run folder \(no run\.json\)/,
      secrets,
    })
    expect(await exists(folder)).toBe(false)
  })

  it('revoke with a non-sysadmin’s key: nothing revoked', async () => {
    const [user] = await query<{apikey: string}>(
      site,
      `SELECT apikey FROM "user" WHERE NOT sysadmin AND state = 'active' AND apikey IS NOT NULL AND name <> $1 ORDER BY name LIMIT 1`,
      [site.siteUserName],
    )
    const key = join(dir, 'user.key')
    await writeFile(key, `${user!.apikey}\n`, {mode: 0o600})
    const tokensBefore = await query(site, 'SELECT id FROM api_token ORDER BY id')
    await expectRefused(['revoke', '--out', run, '--ckan-url', site.ckanUrl, '--api-key-file', key], {
      code: 'ckanRejected',
      message:
        /user\.key belongs to a user who is not a sysadmin \(CKAN answered 403 to get_site_user; sent in Authorization, then in X-CKAN-API-Key\)/,
      secrets: [...secrets, user!.apikey],
    })
    expect(await query(site, 'SELECT id FROM api_token ORDER BY id')).toEqual(tokensBefore)
    await expectRunUnchanged()
  })

  it('bundle with a server certificate that does not exist: no bundle folder', async () => {
    await expectRefused(['bundle', '--out', run, '--server-cert', join(dir, 'no-cert.pem')], {
      code: 'badInput',
      message: /Cannot read the server certificate .*no-cert\.pem: it does not exist/,
      secrets,
    })
    await expectRunUnchanged()
  })

  it('bundle with a server certificate that is not PEM', async () => {
    const notPem = join(dir, 'cert.der')
    await writeFile(notPem, Buffer.from([0x30, 0x82, 0x01, 0x0a, 0x02]))
    await expectRefused(['bundle', '--out', run, '--server-cert', notPem], {
      code: 'badInput',
      message: /cert\.der is not a PEM certificate \(no -----BEGIN CERTIFICATE----- block\)/,
      secrets,
    })
    await expectRunUnchanged()
  })

  it('bundle on a run folder without tokens', async () => {
    const empty = join(dir, 'empty-run')
    const skipped = await runCli(issue(empty, '--users', site.siteUserName))
    expect(skipped.exitCode, skipped.stdout).toBe(0)
    await expectRefused(['bundle', '--out', empty, '--server-cert', SANDBOX_CERT], {
      code: 'badInput',
      message: /empty-run holds no tokens for people to bundle/,
    })
    expect(await exists(join(empty, 'bundles'))).toBe(false)
  })

  it('rewrite-config on a read-only ckan.ini: the file is unchanged, no token created, no run folder made', async () => {
    const ini = join(dir, 'readonly-ckan.ini')
    const text = await readFile(site.ckanIni, 'utf8')
    await writeFile(ini, text)
    await chmod(ini, 0o444)
    const tokensBefore = await query(site, 'SELECT id FROM api_token ORDER BY id')
    const iniSecrets = [
      ...secrets,
      ...[...text.matchAll(/^(?:beaker\.session\.secret|SECRET_KEY)\s*=\s*(\S+)/gm)].map((match) => match[1]!),
    ]
    await expectRefused(
      [
        'rewrite-config',
        '--ckan-ini',
        ini,
        '--ckan-url',
        site.ckanUrl,
        '--api-key-file',
        site.apiKeyFile,
        '--out',
        join(dir, 'rewrite-run'),
      ],
      {
        code: 'writeFailed',
        message: /readonly-ckan\.ini is read-only \(mode 0444\)/,
        secrets: iniSecrets,
      },
    )
    expect(await readFile(ini, 'utf8')).toBe(text)
    expect(await query(site, 'SELECT id FROM api_token ORDER BY id')).toEqual(tokensBefore)
    expect(await snapshotFolder(dir)).not.toHaveProperty(['readonly-ckan.ini.bak'])
    expect(await exists(join(dir, 'rewrite-run'))).toBe(false)
  })

  it('rewrite-config with an unknown --service: the file is unchanged', async () => {
    const before = await readFile(site.ckanIni, 'utf8')
    await expectRefused(
      ['rewrite-config', '--ckan-ini', site.ckanIni, '--service', 'datapusher,../../evil', '--dry-run'],
      {code: 'badInput', message: /^Unknown service: datapusher,\.\.\/\.\.\/evil/},
    )
    expect(await readFile(site.ckanIni, 'utf8')).toBe(before)
  })

  it('purge-keys without --backup or --no-backup: no key cleared', async () => {
    const before = await databaseState(site)
    await expectRefused(['purge-keys', '--ckan-ini', site.ckanIni, '--out', run], {
      code: 'badInput',
      message: /purge-keys needs --backup FILE .* or an explicit --no-backup/,
    })
    expect(await databaseState(site)).toBe(before)
    await expectRunUnchanged()
  })

  it('purge-keys on a 2.9 site without --confirm-2.9: no key cleared', async () => {
    const before = await databaseState(site)
    await expectRefused(['purge-keys', '--ckan-ini', site.ckanIni, '--out', run, '--no-backup'], {
      code: 'badInput',
      message: /This site still runs CKAN 2\.9, where legacy keys still authenticate/,
      suggestion: /--confirm-2\.9/,
    })
    expect(await databaseState(site)).toBe(before)
    await expectRunUnchanged()
  })

  it('purge-keys with a --backup that ckan-migrate did not make (no sidecar): no key cleared', async () => {
    const fake = join(dir, 'ckan.dump')
    await writeFile(fake, 'PGDMP not really')
    const before = await databaseState(site)
    await expectRefused(['purge-keys', '--ckan-ini', site.ckanIni, '--out', run, '--backup', fake, '--confirm-2.9'], {
      code: 'badInput',
      message: /The backup ckan\.dump has no readable sidecar ckan\.dump\.json \(it does not exist\)/,
    })
    expect(await databaseState(site)).toBe(before)
    await expectRunUnchanged()
  })
})
