import {stat} from 'node:fs/promises'

import {EXIT_CODES, MigrateError} from '../errors.js'
import {readFailure, readInputText, SMALL_FILE_LIMIT} from '../fs/input-file.js'
import {Secret} from '../secret.js'

export const API_KEY_ENV = 'CKAN_MIGRATE_API_KEY'

export type CredentialSource = {
  /** Path given with --api-key-file. */
  file?: string
  /** Environment to read CKAN_MIGRATE_API_KEY from (process.env by default). */
  env?: NodeJS.ProcessEnv
}

export type Credential = {
  /** 'legacy-key' for a UUID (works only on CKAN 2.9), 'token' for a JWT. */
  kind: 'legacy-key' | 'token' | 'unknown'
  secret: Secret
  /** Where it came from, for messages: a path or the env var's name. Never the value. */
  source: string
  /** Set when the file can be read by group or others. */
  warning?: string
}

const UUID = /^[\da-f]{8}-[\da-f]{4}-[\da-f]{4}-[\da-f]{4}-[\da-f]{12}$/i
const JWT = /^eyJ[\w-]*\.[\w-]+\.[\w-]*$/

/** Tells a legacy key (UUID) from an API token (JWT) by its shape, as ckan-facts §2 describes. */
export function credentialKind(value: string): Credential['kind'] {
  if (UUID.test(value)) return 'legacy-key'
  if (JWT.test(value)) return 'token'
  return 'unknown'
}

/**
 * Reads the sysadmin credential from --api-key-file or CKAN_MIGRATE_API_KEY, never from argv.
 * Surrounding white space (a trailing newline) is removed.
 */
export async function readCredential(source: CredentialSource): Promise<Credential> {
  const env = source.env ?? process.env
  if (source.file) {
    let text: string
    let warning: string | undefined
    try {
      text = await readInputText(source.file, {maxBytes: SMALL_FILE_LIMIT})
      const info = await stat(source.file)
      if ((info.mode & 0o077) !== 0)
        warning = `${source.file} can be read by other users (mode ${(info.mode & 0o777).toString(8)}); chmod 600 it.`
    } catch (error) {
      throw new MigrateError(`Cannot read the API key file ${source.file}: it ${readFailure(error)}`, {
        cause: error,
        exitCode: EXIT_CODES.badInput,
        suggestion: `Pass --api-key-file with a readable regular file that holds only the sysadmin token or key (a pipe such as <(…) is not one: set ${API_KEY_ENV} instead).`,
      })
    }
    return build(text, source.file, warning)
  }
  const fromEnv = env[API_KEY_ENV]
  if (fromEnv !== undefined && fromEnv.trim() !== '') return build(fromEnv, API_KEY_ENV, undefined)
  throw new MigrateError('No CKAN credential given', {
    exitCode: EXIT_CODES.badInput,
    suggestion: `Pass --api-key-file FILE (a file holding a sysadmin token or legacy key) or set ${API_KEY_ENV}.`,
  })
}

function build(text: string, source: string, warning: string | undefined): Credential {
  const value = text.trim()
  if (value === '') {
    throw new MigrateError(`${source} is empty: it must hold the API token or key`, {
      exitCode: EXIT_CODES.badInput,
      suggestion: "Put the sysadmin's API token (or legacy key) in it, as CKAN showed it, on one line.",
    })
  }
  // What an HTTP header would hold, pasted whole: CKAN wants the bare token in Authorization.
  if (/^(bearer|token|authorization:)\s/i.test(value)) {
    throw new MigrateError(
      `${source} starts with "${value.split(/\s/)[0]}": it must hold just the API token or key, without a prefix`,
      {
        exitCode: EXIT_CODES.badInput,
        suggestion: `Remove the "${value.split(/\s/)[0]} " prefix: ckan-migrate sends the token as CKAN expects it (the bare value in Authorization).`,
      },
    )
  }
  if (/\s/.test(value)) {
    throw new MigrateError(`${source} must hold exactly one API token or key, with nothing else`, {
      exitCode: EXIT_CODES.badInput,
      suggestion: 'Put only the token (or key) in the file, on one line.',
    })
  }
  // It travels in an HTTP header: printable ASCII only (tokens are base64url, keys UUIDs).
  if (!/^[\x21-\x7E]+$/.test(value)) {
    throw new MigrateError(`${source} holds a character an API token or key cannot have (binary or non-ASCII)`, {
      exitCode: EXIT_CODES.badInput,
      suggestion: 'Put only the token (or key) in the file, as CKAN showed it, on one line.',
    })
  }
  return {kind: credentialKind(value), secret: new Secret(value), source, ...(warning ? {warning} : {})}
}
