import SMTPConnection from 'nodemailer/lib/smtp-connection'
import {isIP} from 'node:net'
import {Readable} from 'node:stream'

import {EXIT_CODES, MigrateError} from '../errors.js'
import type {SmtpSettings} from './smtp-settings.js'

/**
 * One SMTP connection (nodemailer's SMTPConnection), opened and logged in once and reused for
 * many messages. What matters for "exactly once" is what the outcome of a send says about the
 * message: it was accepted (with the server's queue id), certainly not delivered (the server
 * refused it with a code, or the connection failed before the server asked for the message body),
 * or unknown (the connection failed after the body went out and before the server's final reply:
 * the server may have queued it).
 */
export type SendOutcome =
  | {kind: 'accepted'; queueId: null | string; response: string}
  /** Failed before DATA was accepted (connection dropped, timeout): nothing was handed over. */
  | {kind: 'not-sent'; reason: string}
  /** The server answered with a refusal: 4xx (temporary, worth a retry) or 5xx (permanent). */
  | {code: number; kind: 'refused'; permanent: boolean; reason: string}
  | {kind: 'unknown'; reason: string}

type NodemailerError = Error & {
  code?: string
  command?: string
  originalCode?: string
  response?: string
  responseCode?: number
}

export type SmtpSessionOptions = {
  /** Name we give in EHLO (the default is the machine's host name). */
  clientName?: string
  settings: SmtpSettings
  timeoutMs: number
}

export class SmtpSession {
  readonly #connection: SMTPConnection
  #broken = false
  /** Ends the send in flight (abort(): nodemailer's close() never calls back a pending send). */
  #settle: ((outcome: SendOutcome) => void) | undefined
  #bodyStarted = false

  private constructor(connection: SMTPConnection) {
    this.#connection = connection
    connection.on('error', () => {
      this.#broken = true
    })
    connection.on('end', () => {
      this.#broken = true
    })
  }

  /** True until the connection failed or was closed: a new session is needed then. */
  get usable(): boolean {
    return !this.#broken
  }

  /**
   * Connects (TLS verified; STARTTLS required unless allowPlain) and logs in. Failures are
   * MigrateErrors with the exit code of their kind: unreachable, TLS, login refused.
   */
  static async open(options: SmtpSessionOptions): Promise<SmtpSession> {
    const {settings} = options
    const connection = new SMTPConnection({
      connectionTimeout: options.timeoutMs,
      greetingTimeout: options.timeoutMs,
      host: settings.host,
      ...(options.clientName ? {name: options.clientName} : {}),
      port: settings.port,
      requireTLS: settings.requireTls,
      secure: settings.implicitTls,
      socketTimeout: options.timeoutMs,
      tls: {
        ...(settings.ca ? {ca: settings.ca} : {}),
        minVersion: 'TLSv1.2',
        rejectUnauthorized: true,
        // SNI carries host names only (RFC 6066); an IP address is still checked against the certificate.
        ...(isIP(settings.host) === 0 ? {servername: settings.host} : {}),
      },
    })
    const session = new SmtpSession(connection)
    try {
      await new Promise<void>((resolve, reject) => {
        connection.once('error', reject)
        connection.connect(() => {
          connection.off('error', reject)
          resolve()
        })
      })
      if (settings.user && settings.password) {
        const credentials = {pass: settings.password.reveal(), user: settings.user}
        await new Promise<void>((resolve, reject) => {
          connection.login(credentials, (error) => (error ? reject(error) : resolve()))
        })
      }
    } catch (error) {
      connection.close()
      throw connectionError(error as NodemailerError, settings)
    }
    return session
  }

  /** Ends the session politely (QUIT); for an idle session. */
  close(): void {
    if (this.#settle) return this.abort()
    this.#broken = true
    try {
      this.#connection.quit()
    } catch {
      this.#connection.close()
    }
  }

  /** Drops the connection now (Ctrl-C); a send in flight ends as not-sent or, once its body went out, unknown. */
  abort(): void {
    this.#broken = true
    this.#connection.close()
    const reason = 'interrupted (Ctrl-C or SIGTERM) before the mail server replied'
    this.#settle?.(this.#bodyStarted ? {kind: 'unknown', reason} : {kind: 'not-sent', reason})
  }

  /** Sends one message (raw RFC 5322 bytes) to `to`; never throws. */
  async send(envelope: {from: string; to: string}, message: Buffer): Promise<SendOutcome> {
    if (this.#broken) return {kind: 'not-sent', reason: 'the connection to the mail server was closed'}
    // The body is only read once the server answered DATA with 354: from then on a silent failure is "unknown".
    this.#bodyStarted = false
    const body = new Readable({
      read: () => {
        this.#bodyStarted = true
        body.push(message)
        body.push(null)
      },
    })
    type Result = {error?: NodemailerError; info?: {response?: string; serverMessageId?: string}; outcome?: SendOutcome}
    const result = await new Promise<Result>((resolve) => {
      this.#settle = (outcome) => resolve({outcome})
      this.#connection.send({from: envelope.from, to: [envelope.to]}, body, (error, info) =>
        resolve(error ? {error: error as NodemailerError} : {info: info as {response?: string}}),
      )
    }).finally(() => {
      this.#settle = undefined
    })
    const bodyStarted = this.#bodyStarted
    if (result.outcome) return result.outcome
    if (result.info) {
      const response = oneLine(result.info.response ?? '')
      return {kind: 'accepted', queueId: result.info.serverMessageId ?? queueIdOf(response), response}
    }
    const error = result.error!
    if (typeof error.responseCode === 'number' && error.responseCode >= 400) {
      // A refused transaction leaves the session usable after RSET; a refused connection does not.
      await this.#reset()
      return {
        code: error.responseCode,
        kind: 'refused',
        permanent: error.responseCode >= 500,
        reason: oneLine(error.response ?? error.message),
      }
    }
    this.#broken = true
    const reason = describeFailure(error)
    return bodyStarted ? {kind: 'unknown', reason} : {kind: 'not-sent', reason}
  }

  async #reset(): Promise<void> {
    if (this.#broken) return
    await new Promise<void>((resolve) => {
      this.#connection.reset((error) => {
        if (error) this.#broken = true
        resolve()
      })
    })
  }
}

/** A queue id from the final reply: Postfix "queued as 4F1A2B3C", Exim "id=1rAbCd-000123-4Z", or the whole reply. */
function queueIdOf(response: string): null | string {
  const match = /queued as ([\w.-]+)/i.exec(response) ?? /\bid=([\w.-]+)/i.exec(response)
  return match?.[1] ?? null
}

function oneLine(text: string): string {
  return text.replaceAll(/\s+/g, ' ').trim().slice(0, 300)
}

function describeFailure(error: NodemailerError): string {
  return oneLine(`${error.originalCode ?? error.code ?? 'error'}: ${error.message}`)
}

const TLS_PROBLEM = /certificate|self[ -]signed|CERT_|ERR_TLS|UNABLE_TO_VERIFY|issuer|altname|wrong version number/i

/** What ends the whole run at connect or login: a MigrateError with the documented exit code. */
export function connectionError(error: NodemailerError, settings: SmtpSettings): MigrateError {
  const detail = oneLine(error.message)
  const where = `${settings.host}:${settings.port}`
  if (error.code === 'EAUTH') {
    return new MigrateError(`The mail server ${where} refused the login of ${settings.user ?? '(none)'}: ${detail}`, {
      cause: error,
      exitCode: EXIT_CODES.mailRejected,
      suggestion: `Check the user in --smtp-url and the password in --smtp-password-file (or CKAN_MIGRATE_SMTP_PASSWORD).`,
    })
  }
  if (TLS_PROBLEM.test(`${error.originalCode ?? ''} ${error.message}`)) {
    return new MigrateError(`TLS with the mail server ${where} failed: ${detail}`, {
      cause: error,
      exitCode: EXIT_CODES.tlsFailure,
      suggestion:
        'If the mail server uses a private CA, pass --ca-cert FILE (its PEM certificate); otherwise fix its certificate. TLS is never skipped.',
    })
  }
  if (error.code === 'ETLS' || (error.command === 'EHLO' && /STARTTLS/.test(error.message))) {
    return new MigrateError(`The mail server ${where} does not offer STARTTLS: ${detail}`, {
      cause: error,
      exitCode: EXIT_CODES.tlsFailure,
      suggestion:
        'Use smtps:// if it speaks TLS on connect, or (on a trusted network only) pass --allow-plain to send unencrypted.',
    })
  }
  if (typeof error.responseCode === 'number') {
    return new MigrateError(`The mail server ${where} refused the session: ${detail}`, {
      cause: error,
      exitCode: EXIT_CODES.mailRejected,
      suggestion: 'Check --smtp-url (host, port, user) with the mail server admin.',
    })
  }
  return new MigrateError(`Cannot reach the mail server ${where}: ${detail}`, {
    cause: error,
    exitCode: EXIT_CODES.mailUnreachable,
    suggestion: 'Check the host and port in --smtp-url, and that this machine may connect to it.',
  })
}
