import {readFile} from 'node:fs/promises'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {makeDeliverFixture, makeSiteDatabase, mailsPerAddress} from '../helpers/deliver-site.js'
import {runCliJson} from '../helpers/run-cli.js'
import {runCliChild} from '../helpers/run-cli-child.js'

type Row = {bundle: {reason: null | string; status: string}; email: string; userName: string}
type Result = {counts: Record<string, number>; deliveries: Row[]}

let site: Awaited<ReturnType<typeof makeSiteDatabase>>
beforeAll(async () => {
  site = await makeSiteDatabase()
}, 60_000)
afterAll(async () => {
  await site?.database.release()
})

const NAMES = ['alice', 'bob', 'carol', 'u1', 'u2', 'u3', 'u4', 'u5', 'u6']

describe('deliver: killed or interrupted during a send batch', () => {
  it('a rerun sends every user not yet sent exactly one mail, and reports (not resends) the one in flight', async () => {
    // The server stores message 4 (and any after it) but never answers: the kill lands while the
    // CLI waits for that reply, i.e. after the message was handed over, before its outcome.
    const fixture = await makeDeliverFixture(site, NAMES, {holdFrom: 3})
    const killed = await runCliChild(fixture.args('--concurrency', '1'), {
      interrupt: {signal: 'SIGKILL', when: fixture.smtp.held},
    })
    expect(killed.signalled).toBe(true)
    expect(killed.signal).toBe('SIGKILL')
    expect(fixture.smtp.mails).toHaveLength(4)
    const inFlight = fixture.smtp.mails[3]!.to[0]!

    fixture.smtp.stopHolding()
    const rerun = await runCliJson<Result>(fixture.args('--concurrency', '3'))
    expect(rerun.exitCode).toBe(11)
    const rows = rerun.json.result!.deliveries
    const unknown = rows.filter((row) => row.bundle.status === 'unknown')
    expect(unknown.map((row) => row.email)).toEqual([inFlight])
    expect(unknown[0]!.bundle.reason).toMatch(/stopped.*before its reply was recorded/)
    expect(rows.filter((row) => row.bundle.status === 'already-sent')).toHaveLength(3)
    expect(rows.filter((row) => row.bundle.status === 'sent')).toHaveLength(NAMES.length - 4)
    expect(rerun.json.warnings.join('\n')).toMatch(/unknown outcome.*--resend-unknown/)
    // Every user has exactly one mail: the one in flight was stored by the server and not sent again.
    const expected = Object.fromEntries(NAMES.map((name) => [`${name}@example.org`, 1]))
    expect(mailsPerAddress(fixture.smtp.mails)).toEqual(expected)

    // Asked to, a rerun sends the unknown one again (and only that one): its user then has two.
    const resend = await runCliJson<Result>(fixture.args('--resend-unknown'))
    expect(resend.exitCode).toBe(0)
    expect(resend.json.result!.counts).toMatchObject({alreadySent: NAMES.length - 1, sent: 1, unknown: 0})
    expect(mailsPerAddress(fixture.smtp.mails)).toEqual({...expected, [inFlight]: 2})
    // Both copies carry the same Message-ID, so mail clients and logs can tell the duplicate.
    const copies = fixture.smtp.mails.filter((mail) => mail.to.includes(inFlight))
    expect(copies[0]!.parsed.messageId).toBe(copies[1]!.parsed.messageId)
    const journal = await readFile(join(fixture.run.path, 'deliveries.jsonl'), 'utf8')
    expect(journal).not.toContain(fixture.account.pass)
  })

  it('Ctrl-C while a reply is awaited ends the run (exit 130) with the message in flight recorded as unknown', async () => {
    const fixture = await makeDeliverFixture(site, ['alice', 'bob', 'carol'], {holdFrom: 1})
    const stopped = await runCliChild(fixture.args('--concurrency', '1'), {
      interrupt: {signal: 'SIGINT', when: fixture.smtp.held},
    })
    expect(stopped.signalled).toBe(true)
    expect(stopped.code, stopped.output).toBe(130)
    expect(stopped.output).toMatch(/Interrupted/)
    const journal = await readFile(join(fixture.run.path, 'deliveries.jsonl'), 'utf8')
    expect(journal).toMatch(/"kind":"send-unknown".*interrupted/)
    expect(journal).not.toContain(fixture.account.pass)

    fixture.smtp.stopHolding()
    const rerun = await runCliJson<Result>(fixture.args())
    expect(rerun.exitCode).toBe(11)
    expect(rerun.json.result!.counts).toMatchObject({alreadySent: 1, sent: 1, unknown: 1})
    expect(mailsPerAddress(fixture.smtp.mails)).toEqual({
      'alice@example.org': 1,
      'bob@example.org': 1,
      'carol@example.org': 1,
    })
  })

  it('--per-minute holds the next message back: Ctrl-C during the wait leaves it unsent (not unknown)', async () => {
    const fixture = await makeDeliverFixture(site, ['alice', 'bob'])
    // One message per minute: the second slot is a minute after the first; the Ctrl-C comes once the
    // first acceptance is journaled, long before. (Which of the two goes first is not promised.)
    const stopped = await runCliChild([...withoutFlag(fixture.args(), '--per-minute'), '--per-minute', '1'], {
      interrupt: {signal: 'SIGINT', when: journaled(join(fixture.run.path, 'deliveries.jsonl'), 'send-accepted')},
    })
    expect(stopped.code, stopped.output).toBe(130)
    const first = mailsPerAddress(fixture.smtp.mails)
    expect(Object.values(first)).toEqual([1])
    expect(['alice@example.org', 'bob@example.org']).toContain(Object.keys(first)[0])
    const rerun = await runCliJson<Result>(fixture.args())
    expect(rerun.exitCode).toBe(0)
    expect(rerun.json.result!.counts).toMatchObject({alreadySent: 1, sent: 1, unknown: 0})
    expect(mailsPerAddress(fixture.smtp.mails)).toEqual({'alice@example.org': 1, 'bob@example.org': 1})
  })
})

/** Resolves once the delivery journal holds an entry of this kind (alice's acceptance is recorded). */
async function journaled(path: string, kind: string): Promise<void> {
  while (!(await readFile(path, 'utf8').catch(() => '')).includes(`"kind":"${kind}"`)) await sleep(20)
}

function withoutFlag(args: string[], flag: string): string[] {
  return args.filter((arg, index) => arg !== flag && args[index - 1] !== flag)
}
