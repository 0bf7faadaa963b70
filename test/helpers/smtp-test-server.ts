import {type ParsedMail, simpleParser} from 'mailparser'
import {randomBytes} from 'node:crypto'
import type {AddressInfo} from 'node:net'
import {SMTPServer, type SMTPServerOptions} from 'smtp-server'
import {onTestFinished} from 'vitest'

/** A message the test server received in full (stored, whether or not it answered). */
export type ReceivedMail = {
  from: string
  parsed: ParsedMail
  queueId: string
  raw: string
  /** Whether the session was encrypted (STARTTLS) when the message came. */
  secure: boolean
  to: string[]
}

export type SmtpTestServerOptions = {
  /** The credentials it accepts (AUTH PLAIN/LOGIN, only after STARTTLS). */
  account: {pass: string; user: string}
  /** PEM certificate and key it offers in STARTTLS. */
  cert: string
  /** Refuse this recipient's RCPT TO with this reply (e.g. 550 for one user), `times` times (default: always). */
  refuse?: {address: string; code: number; message: string; times?: number}
  /**
   * Store message number `holdFrom` (0-based, counting every message received) and the ones after
   * it, but never answer them: like a server that queued a message and then lost the connection
   * before its reply.
   */
  holdFrom?: number
  key: string
  /** No STARTTLS offered (AUTH allowed in plain text): a server --allow-plain is for. */
  plain?: boolean
  /** TLS from the first byte (smtps://). */
  secure?: boolean
}

export type SmtpTestServer = {
  /** Logins refused so far. */
  authFailures: number
  close(): Promise<void>
  /** Resolves once the first held message was stored. */
  held: Promise<void>
  /** Every message stored, in order. */
  mails: ReceivedMail[]
  /** Most connections that were open at once. */
  maxConnections: number
  port: number
  /** RCPT TO refusals so far. */
  refusals: number
  /** From now on every message is answered (see holdFrom). */
  stopHolding(): void
}

/**
 * A real SMTP server (the smtp-server package) on 127.0.0.1: STARTTLS with the given certificate,
 * AUTH required, each message parsed with mailparser.
 */
export async function startSmtpTestServer(options: SmtpTestServerOptions): Promise<SmtpTestServer> {
  let received = 0
  let open = 0
  let markHeld: () => void = () => {}
  let holdFrom = options.holdFrom
  const state: Omit<SmtpTestServer, 'close' | 'port' | 'stopHolding'> = {
    authFailures: 0,
    refusals: 0,
    held: new Promise<void>((resolve) => {
      markHeld = resolve
    }),
    mails: [],
    maxConnections: 0,
  }
  const serverOptions: SMTPServerOptions = {
    authMethods: ['PLAIN', 'LOGIN'],
    cert: options.cert,
    closeTimeout: 500,
    key: options.key,
    logger: false,
    onAuth(auth, _session, callback) {
      if (auth.username === options.account.user && auth.password === options.account.pass)
        return callback(null, {user: auth.username})
      state.authFailures += 1
      return callback(Object.assign(new Error('Authentication credentials invalid'), {responseCode: 535}))
    },
    onClose() {
      open -= 1
    },
    onConnect(_session, callback) {
      open += 1
      state.maxConnections = Math.max(state.maxConnections, open)
      callback()
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = []
      stream.on('data', (chunk: Buffer) => chunks.push(chunk))
      stream.on('end', () => {
        const raw = Buffer.concat(chunks).toString('utf8')
        const number = received
        received += 1
        const queueId = randomBytes(5).toString('hex').toUpperCase()
        void simpleParser(raw).then((parsed) => {
          state.mails.push({
            from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
            parsed,
            queueId,
            raw,
            secure: session.secure,
            to: session.envelope.rcptTo.map((recipient) => recipient.address),
          })
          if (holdFrom !== undefined && number >= holdFrom) {
            markHeld()
            return // never answered
          }
          callback(null, `2.0.0 Ok: queued as ${queueId}`)
        })
      })
    },
    onRcptTo(address, _session, callback) {
      if (options.refuse && address.address === options.refuse.address && (options.refuse.times ?? 1) > 0) {
        if (options.refuse.times !== undefined) options.refuse.times -= 1
        state.refusals += 1
        return callback(Object.assign(new Error(options.refuse.message), {responseCode: options.refuse.code}))
      }
      return callback()
    },
    secure: options.secure ?? false,
    ...(options.plain ? {allowInsecureAuth: true, disabledCommands: ['STARTTLS']} : {}),
  }
  const server = new SMTPServer(serverOptions)
  server.on('error', () => {})
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const {port} = server.server.address() as AddressInfo
  const close = () => new Promise<void>((resolve) => server.close(() => resolve()))
  onTestFinished(close)
  return Object.assign(state, {
    close,
    port,
    stopHolding() {
      holdFrom = undefined
    },
  })
}
