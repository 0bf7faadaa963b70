import {EXIT_CODES, MigrateError} from '../errors.js'
import {dominantLineEnding, joinLines, splitLines, type TextLine} from './ini-editor.js'

/**
 * A line-preserving editor for docker-style env files (`docker run --env-file`, compose
 * `env_file:`, ckan-docker's `.env`): `KEY=value` lines, `#` comments, blank lines, an optional
 * `export ` prefix. Text in, `{text, changes}` out, no I/O; the same byte-preservation promise as
 * the ini editor (comments, order, each line's CRLF/LF, BOM, the final newline).
 *
 * Where a variable goes: an existing `KEY=…` line is rewritten in place (its prefix, spacing and
 * quote style kept); else after the last commented-out `#KEY=…` line; else right after the file's
 * last assignment (before trailing comments and blank lines). A variable set twice is reported
 * in `duplicates` and nothing changes.
 *
 * Quoting: a replaced value keeps the quotes its line had; a new line uses the style most of the
 * file's values use (none, "double" or 'single'). Values that style cannot hold are refused
 * rather than written in a way docker and compose would read differently.
 */

export type EnvSetting = {
  /** The variable name, e.g. CKANEXT__XLOADER__API_TOKEN. */
  name: string
  secret: boolean
  /** The literal value the container should see. */
  value: string
}

export type EnvQuote = '"' | "'" | ''

export type EnvChange = {
  action: 'append' | 'insert-after-comment' | 'replace'
  line: number
  name: string
  secret: boolean
}

export type EnvEditResult = {changes: EnvChange[]; duplicates: Array<{lines: number[]; name: string}>; text: string}

const ASSIGNMENT = /^(\s*(?:export\s+)?)([A-Za-z_]\w*)(\s*=)(.*)$/
const COMMENTED_ASSIGNMENT = /^\s*#+\s*(?:export\s+)?([A-Za-z_]\w*)\s*=/

type Parsed = {name: string; quote: EnvQuote; value: string}

/** Splits the right-hand side of `KEY=` into its quote style and literal value. */
export function parseEnvValue(raw: string): {quote: EnvQuote; value: string} {
  const trimmed = raw.trim()
  if (trimmed.length >= 2 && trimmed.startsWith('"') && trimmed.endsWith('"')) {
    return {
      quote: '"',
      value: trimmed
        .slice(1, -1)
        .replaceAll(/\\(["\\])/g, '$1')
        .replaceAll('$$', '$'),
    }
  }
  if (trimmed.length >= 2 && trimmed.startsWith("'") && trimmed.endsWith("'"))
    return {quote: "'", value: trimmed.slice(1, -1)}
  return {quote: '', value: raw}
}

/** Writes a literal value in a quote style, or refuses when that style cannot hold it. */
export function formatEnvValue(name: string, value: string, quote: EnvQuote): string {
  if (/[\r\n]/.test(value)) throw unrepresentable(name, 'a line break')
  if (quote === '"') return `"${value.replaceAll('\\', '\\\\').replaceAll('"', '\\"').replaceAll('$', '$$$$')}"`
  if (quote === "'") {
    if (value.includes("'")) throw unrepresentable(name, "a ' inside single quotes")
    return `'${value}'`
  }
  if (/[\s#"'$\\`]/.test(value)) throw unrepresentable(name, 'white space, quotes, #, $ or \\ without quotes')
  return value
}

function unrepresentable(name: string, what: string): MigrateError {
  return new MigrateError(`The value for ${name} contains ${what}, which this env file cannot hold safely`, {
    exitCode: EXIT_CODES.badInput,
    suggestion: 'Quote the values in the env file with double quotes, or use a secret without such characters.',
  })
}

function parseLine(line: TextLine): Parsed | undefined {
  const match = ASSIGNMENT.exec(line.text)
  if (!match) return undefined
  return {name: match[2]!, ...parseEnvValue(match[4]!)}
}

/** The quote style most assignments in the file use (none when there are none). */
export function dominantQuote(lines: readonly TextLine[]): EnvQuote {
  const counts = {'"': 0, "'": 0, '': 0}
  for (const line of lines) {
    const parsed = parseLine(line)
    if (parsed && parsed.value !== '') counts[parsed.quote] += 1
  }
  if (counts['"'] > counts[''] && counts['"'] >= counts["'"]) return '"'
  if (counts["'"] > counts['']) return "'"
  return ''
}

export function editEnvFile(text: string, settings: readonly EnvSetting[]): EnvEditResult {
  const split = splitLines(text)
  const {lines} = split
  const byName = new Map<string, number[]>()
  let lastAssignment = -1
  for (const [index, line] of lines.entries()) {
    const parsed = parseLine(line)
    if (!parsed) continue
    byName.set(parsed.name, [...(byName.get(parsed.name) ?? []), index])
    lastAssignment = index
  }
  const duplicates = [...byName]
    .filter(([, indexes]) => indexes.length > 1)
    .map(([name, indexes]) => ({lines: indexes.map((index) => index + 1), name}))
  if (duplicates.length > 0) return {changes: [], duplicates, text}

  const quote = dominantQuote(lines)
  const replacements = new Map<number, string>()
  const insertions = new Map<number, string[]>()
  const planned: Array<{action: EnvChange['action']; marker: string; name: string; secret: boolean}> = []
  for (const setting of settings) {
    const existing = byName.get(setting.name)?.[0]
    if (existing !== undefined) {
      const match = ASSIGNMENT.exec(lines[existing]!.text)!
      const current = parseEnvValue(match[4]!)
      if (current.value === setting.value) continue
      const leading = /^\s*/.exec(match[4]!)![0]
      replacements.set(
        existing,
        `${match[1]}${match[2]}${match[3]}${leading}${formatEnvValue(setting.name, setting.value, current.quote)}`,
      )
      planned.push({action: 'replace', marker: `r${existing}`, name: setting.name, secret: setting.secret})
      continue
    }
    let anchor = -1
    for (const [index, line] of lines.entries())
      if (COMMENTED_ASSIGNMENT.exec(line.text)?.[1] === setting.name) anchor = index
    const action = anchor === -1 ? 'append' : 'insert-after-comment'
    if (anchor === -1) anchor = lastAssignment === -1 ? lines.length - 1 : lastAssignment
    const list = insertions.get(anchor) ?? []
    list.push(`${setting.name}=${formatEnvValue(setting.name, setting.value, quote)}`)
    insertions.set(anchor, list)
    planned.push({action, marker: `i${anchor}:${list.length - 1}`, name: setting.name, secret: setting.secret})
  }

  const output: TextLine[] = []
  const positions = new Map<string, number>()
  const eol = dominantLineEnding(lines)
  const appendInserted = (anchor: number) => {
    const inserted = insertions.get(anchor)
    if (!inserted) return
    const last = output.at(-1)
    const anchorHadNoEol = last !== undefined && last.eol === ''
    if (last && anchorHadNoEol) last.eol = eol
    // A new line ends like the line it follows (the file's usual ending after a last line without one).
    const lineEol = last ? last.eol : eol
    for (const [position, textLine] of inserted.entries()) {
      positions.set(`i${anchor}:${position}`, output.length)
      output.push({eol: lineEol, text: textLine})
    }
    if (anchorHadNoEol) output.at(-1)!.eol = ''
  }
  appendInserted(-1)
  for (const [index, line] of lines.entries()) {
    const replacement = replacements.get(index)
    if (replacement !== undefined) positions.set(`r${index}`, output.length)
    output.push(replacement === undefined ? {...line} : {eol: line.eol, text: replacement})
    appendInserted(index)
  }
  const changes = planned.map((change) => ({
    action: change.action,
    line: positions.get(change.marker)! + 1,
    name: change.name,
    secret: change.secret,
  }))
  return {changes, duplicates, text: changes.length === 0 ? text : joinLines({bom: split.bom, lines: output})}
}
