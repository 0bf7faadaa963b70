import {EXIT_CODES, MigrateError} from '../errors.js'

export const DEFAULT_TOKEN_NAME = 'ckan-migrate {date} {run}'

const PLACEHOLDER = /\{(\w+)\}/g
const KNOWN = new Set(['date', 'run', 'user'])

/**
 * Checks a --token-name template: only {date}, {run} and {user}, and {run} is required, because
 * the run id in every name is how a resumed run recognises the tokens it created.
 */
export function checkTokenNameTemplate(template: string): string {
  const unknown = [...template.matchAll(PLACEHOLDER)].map((match) => match[1]!).filter((name) => !KNOWN.has(name))
  if (unknown.length > 0) {
    throw new MigrateError(`--token-name has unknown placeholder {${unknown[0]}}`, {
      exitCode: EXIT_CODES.badInput,
      suggestion: 'Use only {date}, {run} and {user}, e.g. --token-name "ckan-migrate {date} {run}".',
    })
  }
  if (!template.includes('{run}')) {
    throw new MigrateError('--token-name must contain {run}', {
      exitCode: EXIT_CODES.badInput,
      suggestion:
        'Keep {run} in the name (e.g. "ckan-migrate {date} {run}"): it is how a resumed run recognises its own tokens.',
    })
  }
  return template
}

/** The token name for one user: placeholders filled, control characters removed. */
export function renderTokenName(template: string, values: {date: string; run: string; user: string}): string {
  return template
    .replaceAll(PLACEHOLDER, (whole, name: string) => (name in values ? values[name as keyof typeof values] : whole))
    .replaceAll(/\p{Cc}/gu, ' ')
}
