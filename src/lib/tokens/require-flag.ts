import {EXIT_CODES, MigrateError} from '../errors.js'

/** A flag the token commands need (shared flags are optional elsewhere, so oclif cannot require them). */
export function requireFlag<T>(value: T | undefined, flag: string, what: string): T {
  if (value === undefined || value === '') {
    throw new MigrateError(`${flag} is required`, {exitCode: EXIT_CODES.badInput, suggestion: `Pass ${what}.`})
  }
  return value
}
