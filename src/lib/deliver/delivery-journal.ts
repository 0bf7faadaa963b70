import {JsonlFile} from '../run/jsonl-file.js'

/**
 * `deliveries.jsonl` in the run folder (0600): the write-ahead journal of `deliver`. Before a
 * message goes out, `send-started` is fsync'd; after the server's final reply, its outcome. A run
 * killed in between leaves a `send-started` without an outcome: that message's fate is unknown
 * (the server may have queued it), and a rerun reports it instead of sending it again (unless
 * --resend-unknown). No secret is ever written here: addresses, message ids, server replies.
 */
export const DELIVERIES_FILE = 'deliveries.jsonl'

export type Channel = 'bundle' | 'password'

type Base = {channel: Channel; messageId: string; to: string; userName: string}

export type DeliveryEvent =
  /** attachmentSha256: SHA-256 of the attached bundle (encrypted bytes), to tell a bundle rewritten since. */
  | (Base & {attachmentSha256?: string; attempt: number; kind: 'send-started'; userId: string})
  | (Base & {kind: 'send-accepted'; queueId: null | string; response: string})
  /** Certainly not delivered: refused by the server (code), or failed before the message body went out (code null). */
  | (Base & {code: null | number; kind: 'send-failed'; permanent: boolean; reason: string})
  | (Base & {kind: 'send-unknown'; reason: string})

export type DeliveryEntry = DeliveryEvent & {at: string}

export type ChannelState =
  | {
      at: string
      attachmentSha256?: string
      messageId: string
      queueId: null | string
      response: string
      state: 'accepted'
      to: string
    }
  | {at: string; code: null | number; permanent: boolean; reason: string; state: 'failed'; to: string}
  | {at: string; messageId: string; reason: string; state: 'unknown'; to: string}

export const KILLED_MID_SEND =
  'the run stopped (crash, kill or power cut) after the message was handed to the mail server and before its reply was recorded'

export type DeliveryStates = Map<string, Partial<Record<Channel, ChannelState>>>

export class DeliveryJournal {
  readonly file: JsonlFile<DeliveryEntry>

  constructor(path: string) {
    this.file = new JsonlFile<DeliveryEntry>(path)
  }

  async close(): Promise<void> {
    await this.file.close()
  }

  /** Appends an event and resolves once it is on disk (fsync'd). */
  async record(event: DeliveryEvent): Promise<void> {
    await this.file.append({...event, at: new Date().toISOString()} as DeliveryEntry)
  }

  /** The state of each user's channels after every entry so far (the last outcome wins). */
  async states(): Promise<DeliveryStates> {
    const states: DeliveryStates = new Map()
    const attachments = new Map<string, string | undefined>()
    for (const entry of await this.file.readAll()) {
      const channels = states.get(entry.userName) ?? {}
      states.set(entry.userName, channels)
      const previous = channels[entry.channel]
      switch (entry.kind) {
        case 'send-started': {
          attachments.set(`${entry.channel}\u0000${entry.userName}`, entry.attachmentSha256)
          // An accepted message is never sent again; a start without an outcome is unknown until one follows.
          if (previous?.state !== 'accepted')
            channels[entry.channel] = {
              at: entry.at,
              messageId: entry.messageId,
              reason: KILLED_MID_SEND,
              state: 'unknown',
              to: entry.to,
            }
          break
        }
        case 'send-accepted': {
          const attachmentSha256 = attachments.get(`${entry.channel}\u0000${entry.userName}`)
          channels[entry.channel] = {
            at: entry.at,
            ...(attachmentSha256 ? {attachmentSha256} : {}),
            messageId: entry.messageId,
            queueId: entry.queueId,
            response: entry.response,
            state: 'accepted',
            to: entry.to,
          }
          break
        }
        case 'send-failed': {
          if (previous?.state !== 'accepted')
            channels[entry.channel] = {
              at: entry.at,
              code: entry.code,
              permanent: entry.permanent,
              reason: entry.reason,
              state: 'failed',
              to: entry.to,
            }
          break
        }
        case 'send-unknown': {
          if (previous?.state !== 'accepted')
            channels[entry.channel] = {
              at: entry.at,
              messageId: entry.messageId,
              reason: entry.reason,
              state: 'unknown',
              to: entry.to,
            }
          break
        }
      }
    }
    return states
  }
}
