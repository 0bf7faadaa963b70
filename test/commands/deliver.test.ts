import {parse} from 'csv-parse/sync'
import {simpleParser} from 'mailparser'
import {existsSync} from 'node:fs'
import {mkdir, readdir, readFile, stat, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {readAccessBundle} from '../../src/lib/bundle/bundle-writer.js'
import {Secret} from '../../src/lib/secret.js'
import {makeDeliverFixture, makeSiteDatabase, mailsPerAddress} from '../helpers/deliver-site.js'
import {runCli, runCliJson} from '../helpers/run-cli.js'
import type {ReceivedMail} from '../helpers/smtp-test-server.js'
import {makeCertificate, temporaryFolder} from '../lib/bundle/bundle-fixtures.js'

type Row = {
  bundle: {messageId: null | string; queueId: null | string; reason: null | string; status: string}
  email: null | string
  password: {channel: string; status: null | string; to: null | string}
  userName: string
}
type Result = {
  counts: Record<string, number>
  deliveries: Row[]
  emlDir: null | string
  passwordChannelFile: null | string
  report: null | string
}

let site: Awaited<ReturnType<typeof makeSiteDatabase>>
beforeAll(async () => {
  site = await makeSiteDatabase()
}, 60_000)
afterAll(async () => {
  await site?.database.release()
})

const NAMES = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'gina']

async function csv(path: string): Promise<Array<Record<string, string>>> {
  return parse(await readFile(path), {bom: true, columns: true}) as Array<Record<string, string>>
}

/** Opens a mail's .dcor-access attachment with a password, as the user would. */
async function openAttachment(mail: ReceivedMail, password: string) {
  const attachment = mail.parsed.attachments.find((part) => part.filename?.endsWith('.dcor-access'))
  expect(attachment, 'the mail carries a .dcor-access attachment').toBeDefined()
  const path = join(await temporaryFolder(), attachment!.filename!)
  await writeFile(path, attachment!.content)
  return readAccessBundle(path, new Secret(password))
}

function expectAbsent(texts: string[], secrets: string[]) {
  for (const text of texts) for (const secret of secrets) expect(text).not.toContain(secret)
}

describe('deliver: to a real SMTP server (STARTTLS, AUTH)', () => {
  it('mails each selected user one bundle that opens with the password of the other channel, skips the rest with reasons, and a rerun sends nothing again', async () => {
    const fixture = await makeDeliverFixture(site, NAMES)
    const contacts = join(fixture.folder, 'contacts.csv')
    await writeFile(contacts, 'user,private_email\nalice,alice.private@example.net\nbob,\n')
    const first = await runCliJson<Result>(
      fixture.args('--contacts', contacts, '--password-to', 'private_email', '--concurrency', '2'),
    )
    expect(first.exitCode, first.stdout + first.stderr).toBe(0)
    const result = first.json.result!
    expect(result.counts).toMatchObject({failed: 0, passwordMails: 1, sent: 3, skipped: 4, unknown: 0})
    const byName = new Map(result.deliveries.map((row) => [row.userName, row]))
    expect(byName.get('dave')!.bundle).toMatchObject({reason: expect.stringMatching(/no email/), status: 'skipped'})
    expect(byName.get('erin')!.bundle).toMatchObject({reason: expect.stringMatching(/"frank"/), status: 'skipped'})
    expect(byName.get('frank')!.bundle).toMatchObject({reason: expect.stringMatching(/"erin"/), status: 'skipped'})
    expect(byName.get('gina')!.bundle).toMatchObject({reason: expect.stringMatching(/deleted/), status: 'skipped'})

    const mails = fixture.smtp.mails
    expect(mailsPerAddress(mails)).toEqual({
      'alice.private@example.net': 1,
      'alice@example.org': 1,
      'bob@example.org': 1,
      'carol@example.org': 1,
    })
    expect(fixture.smtp.maxConnections).toBeLessThanOrEqual(2)
    expect(mails.every((mail) => mail.secure)).toBe(true)
    const channel = await csv(result.passwordChannelFile!)
    expect((await stat(result.passwordChannelFile!)).mode & 0o777).toBe(0o600)
    expect(channel.map((row) => row.user)).toEqual(['alice', 'bob', 'carol'])
    const allPasswords = fixture.passwords.map((row) => row.password)
    for (const name of ['alice', 'bob', 'carol']) {
      const mail = mails.find((candidate) => candidate.to.includes(`${name}@example.org`))!
      const password = channel.find((row) => row.user === name)!.password!
      const opened = await openAttachment(mail, password)
      expect(opened.token.reveal()).toBe(fixture.run.tokens.get(name)!.token)
      expect(mail.parsed.text).toContain(`${name}.dcor-access`)
      expect(mail.parsed.html || '').toContain('<p>')
      expect(mail.from).toBe('dcor@example.org')
      // The server's queue id is what the report records.
      expect(byName.get(name)!.bundle.queueId).toBe(mail.queueId)
      expectAbsent([mail.raw], allPasswords)
    }
    // Markup in a full name is shown, not run.
    const bobMail = mails.find((mail) => mail.to.includes('bob@example.org'))!
    expect(bobMail.parsed.html).toContain('Bob &lt;b&gt;Builder&lt;/b&gt;')
    const passwordMail = mails.find((mail) => mail.to.includes('alice.private@example.net'))!
    expect(passwordMail.parsed.attachments).toHaveLength(0)
    expect(passwordMail.parsed.text).toContain(channel.find((row) => row.user === 'alice')!.password)
    expect(passwordMail.parsed.text).toContain('alice.dcor-access')

    const report = await readFile(result.report!, 'utf8')
    const journal = await readFile(join(fixture.run.path, 'deliveries.jsonl'), 'utf8')
    expectAbsent(
      [first.stdout, first.stderr, report, journal, await readFile(join(fixture.run.path, 'journal.jsonl'), 'utf8')],
      [...allPasswords, fixture.account.pass],
    )

    const second = await runCliJson<Result>(fixture.args('--contacts', contacts, '--password-to', 'private_email'))
    expect(second.exitCode).toBe(0)
    expect(second.json.result!.counts).toMatchObject({alreadySent: 3, sent: 0, passwordMails: 0})
    expect(fixture.smtp.mails).toHaveLength(4)
    // The second channel still lists every delivered bundle with its password.
    expect((await csv(second.json.result!.passwordChannelFile!)).map((row) => row.password)).toEqual(
      channel.map((row) => row.password),
    )

    // bundle --force gives every bundle a new password: the mailed copies keep theirs, and so does
    // the second channel; nothing is mailed again.
    expect((await runCli([...fixture.bundleArgs, '--force'])).exitCode).toBe(0)
    const third = await runCliJson<Result>(fixture.args('--contacts', contacts, '--password-to', 'private_email'))
    expect(third.exitCode).toBe(0)
    expect(third.json.warnings.join('\n')).toMatch(/3 bundle\(s\) changed since they were mailed/)
    expect(fixture.smtp.mails).toHaveLength(4)
    const kept = await csv(third.json.result!.passwordChannelFile!)
    for (const name of ['alice', 'bob', 'carol']) {
      const mail = mails.find((candidate) => candidate.to.includes(`${name}@example.org`))!
      const opened = await openAttachment(mail, kept.find((row) => row.user === name)!.password!)
      expect(opened.token.reveal()).toBe(fixture.run.tokens.get(name)!.token)
    }
  })

  it('--dry-run renders every message as .eml (bundle attached, no password) and sends nothing', async () => {
    const fixture = await makeDeliverFixture(site, ['alice', 'bob', 'dave'])
    const contacts = join(fixture.folder, 'contacts.csv')
    await writeFile(contacts, 'user,phone_mail\nalice,alice@sms.example.net\n')
    const {exitCode, json, stdout} = await runCliJson<Result>(
      fixture.args('--dry-run', '--contacts', contacts, '--password-to', 'phone_mail'),
    )
    expect(exitCode).toBe(0)
    expect(json.result!.counts).toMatchObject({skipped: 1, wouldSend: 2})
    const emlDir = json.result!.emlDir!
    expect((await readdir(emlDir)).sort()).toEqual(['alice.bundle.eml', 'alice.password.eml', 'bob.bundle.eml'])
    expect((await stat(emlDir)).mode & 0o777).toBe(0o700)
    const texts = await Promise.all((await readdir(emlDir)).map((name) => readFile(join(emlDir, name), 'utf8')))
    expectAbsent(
      [...texts, stdout],
      fixture.passwords.map((row) => row.password),
    )
    const alice = await simpleParser(texts[(await readdir(emlDir)).indexOf('alice.bundle.eml')]!)
    expect(alice.attachments.map((part) => part.filename)).toEqual(['alice.dcor-access'])
    expect(alice.to).toMatchObject({text: 'alice@example.org'})
    const alicePassword = await simpleParser(texts[(await readdir(emlDir)).indexOf('alice.password.eml')]!)
    expect(alicePassword.text).toContain('alice.dcor-access')
    expect(alicePassword.attachments).toHaveLength(0)
    // The login was checked, nothing was sent, no delivery was recorded.
    expect(fixture.smtp.mails).toHaveLength(0)
    expect(existsSync(join(fixture.run.path, 'deliveries.jsonl'))).toBe(false)
    expect(existsSync(join(fixture.run.path, 'deliver-report.csv'))).toBe(false)
  })

  it('refuses to mail the password to the address of its bundle', async () => {
    const fixture = await makeDeliverFixture(site, ['alice', 'bob'])
    const contacts = join(fixture.folder, 'contacts.csv')
    await writeFile(contacts, 'user,second\nalice,ALICE@example.org\n')
    const {exitCode, json} = await runCliJson<Result>(fixture.args('--contacts', contacts, '--password-to', 'second'))
    expect(exitCode).toBe(7)
    expect(json.error!.message).toMatch(/bundle's own address.*"alice"/)
    expect(fixture.smtp.mails).toHaveLength(0)
  })

  it('retries a 4xx reply and reports a 5xx for one recipient per user (exit 11); the others are delivered', async () => {
    const fixture = await makeDeliverFixture(site, ['alice', 'bob', 'carol'], {
      refuse: {address: 'bob@example.org', code: 550, message: '5.1.1 <bob@example.org>: mailbox unavailable'},
    })
    const {exitCode, json, stderr} = await runCliJson<Result>(fixture.args())
    expect(exitCode).toBe(11)
    expect(json.status).toBe(11)
    const bob = json.result!.deliveries.find((row) => row.userName === 'bob')!
    expect(bob.bundle).toMatchObject({
      reason: expect.stringMatching(/550 5\.1\.1.*mailbox unavailable/),
      status: 'failed',
    })
    expect(mailsPerAddress(fixture.smtp.mails)).toEqual({'alice@example.org': 1, 'carol@example.org': 1})
    expect(fixture.smtp.refusals).toBe(1) // a permanent refusal is not retried
    const report = await csv(json.result!.report!)
    expect(report.find((row) => row.user === 'bob')).toMatchObject({bundle_status: 'failed'})
    expect(stderr).not.toContain(fixture.account.pass)

    const temporary = await makeDeliverFixture(site, ['carol'], {
      refuse: {address: 'carol@example.org', code: 451, message: '4.7.1 greylisted, try again', times: 2},
    })
    const retried = await runCliJson<Result>(temporary.args('--retries', '2'))
    expect(retried.exitCode).toBe(0)
    expect(temporary.smtp.refusals).toBe(2)
    expect(mailsPerAddress(temporary.smtp.mails)).toEqual({'carol@example.org': 1})
  })

  it('ends with exit 17 when the server refuses the login, 15 for a certificate it cannot verify, 16 when nobody listens; nothing is sent', async () => {
    const fixture = await makeDeliverFixture(site, ['alice'])
    await writeFile(fixture.passwordFile, 'wrong-password\n')
    const refused = await runCliJson<Result>(fixture.args())
    expect(refused.exitCode).toBe(17)
    expect(refused.json.error).toMatchObject({code: 'mailRejected'})
    expect(refused.json.error!.message).toMatch(/refused the login of mailer/)
    expect(refused.stdout + refused.stderr).not.toContain('wrong-password')
    expect(fixture.smtp.authFailures).toBeGreaterThan(0)

    // No --ca-cert: the self-signed certificate is not trusted.
    const withoutCa = fixture.args().filter((arg, index, all) => arg !== '--ca-cert' && all[index - 1] !== '--ca-cert')
    const untrusted = await runCliJson<Result>(withoutCa)
    expect(untrusted.exitCode).toBe(15)
    expect(untrusted.json.error).toMatchObject({code: 'tlsFailure'})
    // Another CA: the server's certificate is not one it signed.
    const other = await makeCertificate('mail.example.org')
    const wrongCa = await runCliJson<Result>([...withoutCa, '--ca-cert', other.certPath])
    expect(wrongCa.exitCode).toBe(15)
    // Nobody listening: exit 16.
    await fixture.smtp.close()
    const unreachable = await runCliJson<Result>(fixture.args())
    expect(unreachable.exitCode).toBe(16)
    expect(unreachable.json.error).toMatchObject({code: 'mailUnreachable'})
    expect(fixture.smtp.mails).toHaveLength(0)
    expect(existsSync(join(fixture.run.path, 'deliveries.jsonl'))).toBe(false)
  })

  it('refuses an SMTP password on the command line without showing it', async () => {
    const fixture = await makeDeliverFixture(site, ['alice'])
    const args = fixture.args()
    const index = args.indexOf('--smtp-url') + 1
    args[index] = args[index]!.replace('mailer@', `mailer:${fixture.account.pass}@`)
    const {exitCode, stdout} = await runCliJson<Result>(args)
    expect(exitCode).toBe(7)
    expect(stdout).toMatch(/holds a password/)
    expect(stdout).not.toContain(fixture.account.pass)
    expect(fixture.smtp.mails).toHaveLength(0)
  })

  it('requires STARTTLS unless --allow-plain (exit 15), and speaks smtps:// (TLS from the first byte)', async () => {
    const plain = await makeDeliverFixture(site, ['alice'], {plain: true})
    const refused = await runCliJson<Result>(plain.args())
    expect(refused.exitCode).toBe(15)
    expect(refused.json.error!.message).toMatch(/STARTTLS/)
    expect(plain.smtp.mails).toHaveLength(0)
    const allowed = await runCliJson<Result>(plain.args('--allow-plain'))
    expect(allowed.exitCode).toBe(0)
    expect(allowed.json.warnings.join('\n')).toMatch(/unencrypted/)
    expect(plain.smtp.mails.map((mail) => mail.secure)).toEqual([false])

    const tls = await makeDeliverFixture(site, ['bob'], {secure: true})
    const args = tls.args()
    const url = args.indexOf('--smtp-url') + 1
    args[url] = args[url]!.replace('smtp://', 'smtps://')
    const sent = await runCliJson<Result>(args)
    expect(sent.exitCode).toBe(0)
    expect(tls.smtp.mails.map((mail) => [mail.to, mail.secure])).toEqual([[['bob@example.org'], true]])
  })
})

describe('deliver: templates', () => {
  it('renders a custom template with its variables, and refuses {{ password }} or an unknown variable in it', async () => {
    const fixture = await makeDeliverFixture(site, ['alice'])
    const template = join(fixture.folder, 'template')
    await mkdir(template)
    await writeFile(join(template, 'subject.txt'), 'Token for {{ user.name }} at {{ site.host }}\n')
    await writeFile(
      join(template, 'body.txt'),
      'Hello {{user.fullname}}, open {{ bundle.file }}.\n{{ instructions.7zip }}\n',
    )
    await writeFile(join(template, 'body.html'), '<p>Hello {{ user.fullname }}</p>')
    const rendered = await runCliJson<Result>(fixture.args('--dry-run', '--template', template))
    expect(rendered.exitCode).toBe(0)
    const eml = await simpleParser(await readFile(join(rendered.json.result!.emlDir!, 'alice.bundle.eml')))
    expect(eml.subject).toBe('Token for alice at dcor.example.org')
    expect(eml.text).toContain('Hello Alice Liddell, open alice.dcor-access.')
    expect(eml.text).toContain('7-Zip')
    expect(eml.html).toContain('<p>Hello Alice Liddell</p>')

    await writeFile(join(template, 'body.txt'), 'Your password: {{ password }}\n')
    const leaking = await runCliJson<Result>(fixture.args('--dry-run', '--template', template))
    expect(leaking.exitCode).toBe(7)
    expect(leaking.json.error!.message).toMatch(/uses \{\{ password \}\}/)
    await writeFile(join(template, 'body.txt'), 'Hello {{ user.nmae }}\n')
    const typo = await runCliJson<Result>(fixture.args('--dry-run', '--template', template))
    expect(typo.exitCode).toBe(7)
    expect(typo.json.error!.message).toMatch(/unknown variable \{\{ user\.nmae \}\}/)
    expect(fixture.smtp.mails).toHaveLength(0)
  })
})
