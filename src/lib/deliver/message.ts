import addressparser from 'nodemailer/lib/addressparser'
import MailComposer from 'nodemailer/lib/mail-composer'

import {EXIT_CODES, MigrateError} from '../errors.js'
import {fingerprintOf} from '../secret.js'
import type {Channel} from './delivery-journal.js'
import type {RenderedParts} from './template.js'

export type Sender = {address: string; header: string}

/** --from: `admin@example.org` or `DCOR team <admin@example.org>`, exactly one mailbox. */
export function parseSender(from: string): Sender {
  const parsed = addressparser(from, {flatten: true})
  const address = parsed.length === 1 ? parsed[0]!.address : ''
  if (!/^[^\s@<>]+@[^\s@<>]+$/.test(address)) {
    throw new MigrateError(`--from ${JSON.stringify(from)} is not one mail address`, {
      exitCode: EXIT_CODES.badInput,
      suggestion: 'Pass --from "DCOR team <admin@example.org>" or --from admin@example.org.',
    })
  }
  return {address, header: from.trim()}
}

/**
 * The Message-ID of a user's message on a channel in this run: the same on every attempt, so a
 * message resent after an unknown outcome (--resend-unknown) can be told apart as a duplicate by
 * mail clients and mail logs.
 */
export function messageIdFor(runId: string, channel: Channel, userName: string, sender: Sender): string {
  const domain = sender.address.split('@').at(-1)!
  return `<ckan-migrate.${runId}.${channel}.${fingerprintOf(userName)}@${domain}>`
}

export type ComposeInput = {
  attachment?: {content: Uint8Array; filename: string}
  messageId: string
  parts: RenderedParts
  replyTo?: string
  sender: Sender
  to: string
}

/** The raw message (RFC 5322, MIME: text and HTML alternatives, the bundle attached), built by nodemailer. */
export async function composeMessage(input: ComposeInput): Promise<Buffer> {
  const composer = new MailComposer({
    attachments: input.attachment
      ? [
          {
            content: Buffer.from(input.attachment.content),
            contentType: 'application/zip',
            filename: input.attachment.filename,
          },
        ]
      : [],
    date: new Date(),
    disableFileAccess: true,
    disableUrlAccess: true,
    from: input.sender.header,
    html: input.parts.html,
    messageId: input.messageId,
    ...(input.replyTo ? {replyTo: input.replyTo} : {}),
    subject: input.parts.subject,
    text: input.parts.text,
    to: input.to,
    xMailer: 'ckan-migrate deliver',
  })
  return composer.compile().build()
}
