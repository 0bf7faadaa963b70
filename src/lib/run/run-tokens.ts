import {EXIT_CODES, MigrateError} from '../errors.js'
import type {CsvColumn} from '../fs/csv-report.js'
import type {RunToken} from './run-folder.js'
import {describeUserNames, namedUsers} from '../site/user-selection.js'

/**
 * What every per-token report of a run starts with (verify, revoke): who, which token (by name
 * and fingerprint, never its value), and what happened to it.
 */
export function runTokenColumns<Row extends {outcome: string; token: RunToken}>(): Array<CsvColumn<Row>> {
  return [
    {header: 'user_id', value: (row) => row.token.userId},
    {header: 'name', value: (row) => row.token.userName},
    {header: 'source', value: (row) => row.token.source},
    {header: 'service', value: (row) => row.token.service},
    {header: 'token_name', value: (row) => row.token.tokenName},
    {header: 'token_id_fingerprint', value: (row) => row.token.jti.fingerprint()},
    {header: 'outcome', value: (row) => row.outcome},
  ]
}

/**
 * --users for a command over a run's tokens: names that hold no token in the run are refused
 * (exit 7), the first five quoted. Returns the wanted names, trimmed and without repeats.
 */
export function checkRunUsers(users: readonly string[], known: ReadonlySet<string>, suggestion: string): Set<string> {
  const wanted = new Set(namedUsers(users))
  const unknown = [...wanted].filter((name) => !known.has(name))
  if (unknown.length > 0) {
    throw new MigrateError(
      `${unknown.length} of the --users hold no token in this run: ${describeUserNames(unknown)}`,
      {exitCode: EXIT_CODES.badInput, suggestion},
    )
  }
  return wanted
}
