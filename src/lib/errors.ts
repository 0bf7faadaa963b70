/**
 * Every exit code ckan-migrate can end with. This object is the single source: docs/exit-codes.md
 * is tested against it, and runbooks gate on these numbers, so they never change meaning.
 */
export const EXIT_CODES = {
  /** Success (for `audit`: the site is READY). */
  ok: 0,
  /** A bug in ckan-migrate: an error nobody anticipated. Please report it. */
  unexpected: 1,
  /** oclif's own usage errors: unknown flag, missing required flag, malformed flag value. */
  usage: 2,
  /** CKAN's action API could not be reached: connection refused, DNS, timeout. */
  ckanUnreachable: 3,
  /** CKAN answered but refused: bad or non-sysadmin credential, unknown user, server errors. */
  ckanRejected: 4,
  /** The run folder (--out) belongs to another site or run, or is locked by another process (as is a config file rewrite-config edits). */
  runConflict: 5,
  /** `verify` found tokens that do not work (or legacy keys that still do, with --legacy); `backup --verify` found a damaged backup. */
  verificationFailed: 6,
  /** Bad input: a missing, unreadable or malformed file (ckan.ini, key file, user list, cert). */
  badInput: 7,
  /** The CKAN database could not be reached or refused the login. */
  databaseUnreachable: 8,
  /** The database answered but is not a CKAN database (no "user" table, no api_token table). */
  notCkanDatabase: 9,
  /** `audit` ran and found blockers: the site is NOT READY for the target version (--target). */
  blockersFound: 10,
  /** The command finished, but some users failed; the report says which and why. Rerun to resume. */
  partialFailure: 11,
  /** A required external program is missing or too old (pg_dump, pg_restore, gpg). */
  toolMissing: 12,
  /** A file or folder could not be written: permissions, a full disk, a read-only file system. */
  writeFailed: 13,
  /** A file changed on disk while we worked on it; nothing was written. */
  fileChanged: 14,
  /** TLS failed: certificate not trusted, expired, or for another host. */
  tlsFailure: 15,
  /** `deliver`: the mail server (--smtp-url) could not be reached: connection refused, DNS, timeout. */
  mailUnreachable: 16,
  /** `deliver`: the mail server refused the login (AUTH) or the session; nothing more was sent. */
  mailRejected: 17,
  /** `adoption --require N%`: fewer users than that have used their new token. */
  adoptionBelowRequired: 18,
  /** `verify`: no token was refused, but some could not be checked (CKAN kept answering 5xx/429, or could not be reached); rerun. */
  verificationIncomplete: 19,
  /** The run was interrupted (Ctrl-C, SIGTERM); everything finished so far is saved. */
  interrupted: 130,
} as const

export type ExitCodeName = keyof typeof EXIT_CODES
export type ExitCode = (typeof EXIT_CODES)[ExitCodeName]

export type MigrateErrorOptions = {
  cause?: unknown
  exitCode: ExitCode
  suggestion?: string
}

/**
 * An error a user can act on: a one-line message saying what is wrong, a suggestion saying what
 * to do, and the documented exit code. Messages must never contain a secret value.
 */
export class MigrateError extends Error {
  readonly exitCode: ExitCode
  override name = 'MigrateError'
  readonly suggestion: string | undefined

  constructor(message: string, options: MigrateErrorOptions) {
    super(message, {cause: options.cause})
    this.exitCode = options.exitCode
    this.suggestion = options.suggestion
  }
}

/** The kind of error, by exit code name: the `code` shown in `--json` errors. */
export function errorCodeName(exitCode: number): string {
  for (const [name, code] of Object.entries(EXIT_CODES)) if (code === exitCode) return name
  return 'unexpected'
}

/** Describes any thrown value in one line, without a stack. */
export function describeError(error: unknown): string {
  if (error instanceof Error) return error.message.split('\n')[0] ?? error.name
  return String(error)
}
