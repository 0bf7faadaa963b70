import {stat} from 'node:fs/promises'

import {EXIT_CODES, MigrateError} from '../errors.js'
import {readFailure, readInputText, SMALL_FILE_LIMIT} from '../fs/input-file.js'
import {Secret} from '../secret.js'

export const SMTP_PASSWORD_ENV = 'CKAN_MIGRATE_SMTP_PASSWORD'

/** Where and how `deliver` talks SMTP; the password is a Secret and never part of the URL. */
export type SmtpSettings = {
  /** PEM of --ca-cert: the only CAs trusted for the mail server when set (Node's list otherwise). */
  ca?: string
  host: string
  /** smtps:// is TLS from the first byte; smtp:// upgrades with STARTTLS (required unless allowPlain). */
  implicitTls: boolean
  password?: Secret
  /** Where the password came from, for messages: a path or the variable's name. Never the value. */
  passwordSource?: string
  port: number
  requireTls: boolean
  /** For messages: the URL without any credential. */
  shown: string
  user?: string
  warnings: string[]
}

export type SmtpSettingsInput = {
  allowPlain: boolean
  caCertPath?: string
  env?: NodeJS.ProcessEnv
  passwordFile?: string
  url: string
}

function bad(message: string, suggestion: string): MigrateError {
  return new MigrateError(message, {exitCode: EXIT_CODES.badInput, suggestion})
}

/**
 * Parses --smtp-url (`smtp://user@host:587` or `smtps://user@host:465`), reads the password from
 * --smtp-password-file or CKAN_MIGRATE_SMTP_PASSWORD (never argv: a password inside the URL is
 * refused without being shown) and --ca-cert.
 */
export async function readSmtpSettings(input: SmtpSettingsInput): Promise<SmtpSettings> {
  let url: URL
  try {
    url = new URL(input.url)
  } catch {
    throw bad('--smtp-url is not a URL', 'Pass smtp://user@mail.example.org:587 (STARTTLS) or smtps://user@host:465.')
  }
  if (url.protocol !== 'smtp:' && url.protocol !== 'smtps:') {
    throw bad(
      `--smtp-url must start with smtp:// or smtps://, not ${url.protocol}//`,
      'Pass smtp://user@mail.example.org:587 (STARTTLS) or smtps://user@host:465.',
    )
  }
  if (url.password !== '') {
    throw bad(
      '--smtp-url holds a password; it would be visible in the process list and shell history',
      `Remove it from the URL and pass --smtp-password-file FILE or set ${SMTP_PASSWORD_ENV}.`,
    )
  }
  const host = url.hostname.replace(/^\[|\]$/g, '')
  if (host === '') throw bad('--smtp-url has no host', 'Pass smtp://user@mail.example.org:587.')
  const implicitTls = url.protocol === 'smtps:'
  const port = url.port === '' ? (implicitTls ? 465 : 587) : Number(url.port)
  const user = url.username === '' ? undefined : decodeURIComponent(url.username)
  const shown = `${url.protocol}//${user ? `${encodeURIComponent(user)}@` : ''}${url.host}`
  const warnings: string[] = []

  let password: Secret | undefined
  let passwordSource: string | undefined
  const env = input.env ?? process.env
  if (input.passwordFile) {
    let text: string
    try {
      text = await readInputText(input.passwordFile, {maxBytes: SMALL_FILE_LIMIT})
      const info = await stat(input.passwordFile)
      if ((info.mode & 0o077) !== 0)
        warnings.push(
          `${input.passwordFile} can be read by other users (mode ${(info.mode & 0o777).toString(8)}); chmod 600 it.`,
        )
    } catch (error) {
      throw new MigrateError(`Cannot read --smtp-password-file ${input.passwordFile}: it ${readFailure(error)}`, {
        cause: error,
        exitCode: EXIT_CODES.badInput,
        suggestion: 'Pass a readable file that holds only the SMTP password (one line).',
      })
    }
    password = checkPassword(text.replace(/\r?\n$/, ''), input.passwordFile)
    passwordSource = input.passwordFile
  } else if (env[SMTP_PASSWORD_ENV] !== undefined && env[SMTP_PASSWORD_ENV] !== '') {
    password = checkPassword(env[SMTP_PASSWORD_ENV], SMTP_PASSWORD_ENV)
    passwordSource = SMTP_PASSWORD_ENV
  }
  if (user && !password) {
    throw bad(
      `--smtp-url names the SMTP user ${JSON.stringify(user)} but no password was given`,
      `Pass --smtp-password-file FILE or set ${SMTP_PASSWORD_ENV}.`,
    )
  }
  if (password && !user) {
    throw bad(
      'An SMTP password was given but --smtp-url names no user',
      'Put the SMTP user into the URL: smtp://user@mail.example.org:587.',
    )
  }

  let ca: string | undefined
  if (input.caCertPath) {
    try {
      ca = await readInputText(input.caCertPath, {maxBytes: SMALL_FILE_LIMIT})
    } catch (error) {
      throw new MigrateError(`Cannot read --ca-cert ${input.caCertPath}: it ${readFailure(error)}`, {
        cause: error,
        exitCode: EXIT_CODES.badInput,
        suggestion: "Pass a readable PEM file with the CA certificate(s) of the mail server's certificate.",
      })
    }
    if (!ca.includes('-----BEGIN CERTIFICATE-----')) {
      throw bad(
        `--ca-cert ${input.caCertPath} holds no PEM certificate`,
        'Pass a PEM file (-----BEGIN CERTIFICATE-----).',
      )
    }
  }
  if (input.allowPlain && !implicitTls)
    warnings.push(
      '--allow-plain: if the mail server offers no STARTTLS, the bundles and the SMTP password travel unencrypted.',
    )

  return {
    ...(ca ? {ca} : {}),
    host,
    implicitTls,
    ...(password ? {password, passwordSource} : {}),
    port,
    requireTls: !input.allowPlain,
    shown,
    ...(user ? {user} : {}),
    warnings,
  }
}

function checkPassword(value: string, source: string): Secret {
  // eslint-disable-next-line no-control-regex
  if (value === '' || /[\u0000-\u001F\u007F]/.test(value)) {
    throw bad(
      `${source} must hold the SMTP password alone, on one line`,
      'Put only the password in it (no second line, no control characters).',
    )
  }
  return new Secret(value)
}
