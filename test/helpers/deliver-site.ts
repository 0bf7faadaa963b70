import {parse} from 'csv-parse/sync'
import {randomUUID} from 'node:crypto'
import {readFile} from 'node:fs/promises'
import {join} from 'node:path'
import pg from 'pg'
import {expect} from 'vitest'

import {createCkanSchema} from '../../src/sandbox/ckan-schema.js'
import {runCli} from './run-cli.js'
import {createTestDatabase, type TestDatabase} from './test-database.js'
import {startSmtpTestServer, type SmtpTestServerOptions} from './smtp-test-server.js'
import {makeCertificate, makeRun, temporaryFolder, writeText} from '../lib/bundle/bundle-fixtures.js'

export type SiteUser = {email: null | string; fullname: string; id: string; name: string; state: string}

/** The people of the test site: three who get mail, and one of each kind `deliver` skips. */
export const PEOPLE: Array<Omit<SiteUser, 'id'>> = [
  {email: 'alice@example.org', fullname: 'Alice Liddell', name: 'alice', state: 'active'},
  {email: 'bob@example.org', fullname: 'Bob <b>Builder</b>', name: 'bob', state: 'active'},
  {email: 'carol@example.org', fullname: 'Carol', name: 'carol', state: 'active'},
  {email: null, fullname: 'Dave', name: 'dave', state: 'active'},
  {email: 'team@example.org', fullname: 'Erin', name: 'erin', state: 'active'},
  {email: 'Team@Example.org', fullname: 'Frank', name: 'frank', state: 'active'},
  {email: 'gina@example.org', fullname: 'Gina', name: 'gina', state: 'deleted'},
  ...['u1', 'u2', 'u3', 'u4', 'u5', 'u6'].map((name) => ({
    email: `${name}@example.org`,
    fullname: name.toUpperCase(),
    name,
    state: 'active',
  })),
]

/** A CKAN 2.9 database holding PEOPLE (one per test file: beforeAll). */
export async function makeSiteDatabase(): Promise<{database: TestDatabase; users: Map<string, SiteUser>}> {
  const database = await createTestDatabase({autoRelease: false})
  const client = new pg.Client({connectionString: database.url})
  await client.connect()
  await createCkanSchema(client, '2.9', {harvest: false})
  const users = new Map<string, SiteUser>()
  for (const person of PEOPLE) {
    const user = {...person, id: randomUUID()}
    users.set(user.name, user)
    await client.query(
      `INSERT INTO "user" (id, name, apikey, created, fullname, email, state) VALUES ($1, $2, $3, now(), $4, $5, $6)`,
      [user.id, user.name, randomUUID(), user.fullname, user.email, user.state],
    )
  }
  await client.end()
  return {database, users}
}

export type DeliverFixture = Awaited<ReturnType<typeof makeDeliverFixture>>

/**
 * A run folder with tokens for `names`, bundled (AES) by the real `bundle` command with the emails
 * from the database; a certificate for 127.0.0.1 and a real SMTP server using it.
 */
export async function makeDeliverFixture(
  site: {database: TestDatabase; users: Map<string, SiteUser>},
  names: string[],
  server: Partial<SmtpTestServerOptions> = {},
) {
  const run = await makeRun(names.map((name) => ({id: site.users.get(name)!.id, name})))
  const {certPath: siteCert} = await makeCertificate('dcor.example.org')
  const bundleArgs = ['bundle', '--out', run.path, '--server-cert', siteCert, '--database-url', site.database.url]
  const bundled = await runCli(bundleArgs)
  expect(bundled.exitCode, bundled.stderr).toBe(0)
  const mailCert = await makeCertificate('127.0.0.1', 'IP:127.0.0.1')
  const account = {pass: `smtp-${randomUUID()}`, user: 'mailer'}
  const smtp = await startSmtpTestServer({account, cert: mailCert.cert, key: mailCert.key, ...server})
  const folder = await temporaryFolder()
  const passwordFile = await writeText(join(folder, 'smtp.pw'), `${account.pass}\n`)
  const passwords = parse(await readFile(join(run.path, 'bundles', 'passwords.csv')), {
    bom: true,
    columns: true,
  }) as Array<{email: string; file: string; password: string; user: string}>
  const args = (...extra: string[]) => [
    'deliver',
    '--out',
    run.path,
    '--smtp-url',
    `smtp://${account.user}@127.0.0.1:${smtp.port}`,
    '--smtp-password-file',
    passwordFile,
    '--ca-cert',
    mailCert.certPath,
    '--from',
    'dcor@example.org',
    '--database-url',
    site.database.url,
    '--per-minute',
    '100000',
    '--retry-wait',
    '0',
    ...extra,
  ]
  return {account, args, bundleArgs, folder, mailCert, passwordFile, passwords, run, smtp}
}

/** How many messages each address received. */
export function mailsPerAddress(mails: Array<{to: string[]}>): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const mail of mails) for (const to of mail.to) counts[to] = (counts[to] ?? 0) + 1
  return counts
}
