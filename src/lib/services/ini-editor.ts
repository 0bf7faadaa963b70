import {EXIT_CODES, MigrateError} from '../errors.js'

/**
 * A line-preserving ckan.ini editor: text in, `{text, changes}` out, no I/O. Only the lines it
 * owns change; every other byte (comments, blank lines, order, case, each line's own CRLF or LF,
 * a UTF-8 BOM, the final newline or its absence) comes back exactly as it went in.
 *
 * Where a setting goes:
 * - an existing `key = value` line in the section is rewritten in place, keeping the key's
 *   spelling and the spacing around the delimiter (its continuation lines, if any, are dropped);
 * - else, after the last commented-out `#key = …` / `;key = …` line of the section;
 * - else, at the end of the section: right after the section's last setting, before the blank
 *   lines and comments that lead into the next section (or after the header of an empty section).
 * A new line ends like the line it follows (CRLF after CRLF), so mixed files stay as mixed as they were.
 *
 * Values are written under Python ConfigParser rules (ckan-facts §7): `%` becomes `%%`, and there
 * are no inline comments (a `#` would become part of the value, which is what CKAN reads anyway).
 * A key set twice in the section is reported in `duplicates` and nothing is changed: CKAN's
 * ConfigParser refuses such a file, and we cannot know which line the admin meant.
 */

export type LineEnding = '' | '\n' | '\r\n'

export type TextLine = {eol: LineEnding; text: string}

export type SplitText = {bom: boolean; lines: TextLine[]}

/** Splits text into lines, each keeping its own ending; a missing final newline is an empty `eol`. */
export function splitLines(text: string): SplitText {
  const bom = text.startsWith('\uFEFF')
  const body = bom ? text.slice(1) : text
  const lines: TextLine[] = []
  let start = 0
  while (start < body.length) {
    const newline = body.indexOf('\n', start)
    if (newline === -1) {
      lines.push({eol: '', text: body.slice(start)})
      break
    }
    const crlf = newline > start && body[newline - 1] === '\r'
    lines.push({eol: crlf ? '\r\n' : '\n', text: body.slice(start, crlf ? newline - 1 : newline)})
    start = newline + 1
  }
  return {bom, lines}
}

export function joinLines(split: SplitText): string {
  return (split.bom ? '\uFEFF' : '') + split.lines.map((line) => line.text + line.eol).join('')
}

/** The ending most lines of the file use (LF for a file without any). */
export function dominantLineEnding(lines: readonly TextLine[]): '\n' | '\r\n' {
  let crlf = 0
  let lf = 0
  for (const line of lines) {
    if (line.eol === '\r\n') crlf += 1
    else if (line.eol === '\n') lf += 1
  }
  return crlf > lf ? '\r\n' : '\n'
}

export type IniSetting = {
  /** The key as it should be written when a new line is added. */
  key: string
  /** True for tokens and signing secrets: diffs and plans show a fingerprint, never the value. */
  secret: boolean
  /** The literal value CKAN should read; the editor escapes `%` itself. */
  value: string
}

export type IniEditOptions = {
  /** 'lowercase' (CKAN 2.9: keys match case-insensitively) or 'preserve' (2.10+). */
  caseRule: 'lowercase' | 'preserve'
  /** For messages only. */
  path: string
  /** The section to edit, e.g. 'app:main'. */
  section: string
}

export type IniChangeAction = 'append' | 'insert-after-comment' | 'replace'

export type IniChange = {
  action: IniChangeAction
  key: string
  /** 1-based line of the new setting in the edited text. */
  line: number
  secret: boolean
}

export type IniDuplicate = {key: string; lines: number[]}

export type IniEditResult = {
  changes: IniChange[]
  /** Keys set more than once in the section (1-based lines); when non-empty, `text` is the input unchanged. */
  duplicates: IniDuplicate[]
  text: string
}

const SECTION = /^\s*\[([^\]]+)\]\s*$/
const OPTION = /^(\s*)([^:=\s][^:=]*?)(\s*[:=][ \t]*)(.*)$/
const COMMENTED_OPTION = /^\s*[#;]+\s*([\w.-]+)\s*[:=]/

type LineInfo =
  | {kind: 'blank' | 'comment' | 'other'; section: string | undefined}
  | {kind: 'continuation'; owner: number; section: string | undefined}
  | {kind: 'option'; key: string; section: string | undefined}
  | {kind: 'section'; name: string; section: string}

/** Escapes a literal value for ConfigParser's BasicInterpolation: every `%` is written `%%`. */
export function escapeIniValue(value: string): string {
  return value.replaceAll('%', '%%')
}

/** Rejects values a ckan.ini line cannot hold (ConfigParser strips them or reads them as more lines). */
export function assertIniValue(key: string, value: string): void {
  if (/[\r\n]/.test(value) || value !== value.trim()) {
    throw new MigrateError(
      `The value for ${key} has line breaks or surrounding spaces, which a ckan.ini line cannot hold`,
      {
        exitCode: EXIT_CODES.badInput,
        suggestion: 'Use a secret without white space at either end (or a file: secret).',
      },
    )
  }
}

function classify(lines: readonly TextLine[]): LineInfo[] {
  const infos: LineInfo[] = []
  let section: string | undefined
  let owner: number | undefined
  for (const [index, line] of lines.entries()) {
    const trimmed = line.text.trim()
    if (trimmed === '') {
      owner = undefined
      infos.push({kind: 'blank', section})
      continue
    }
    if (trimmed.startsWith('#') || trimmed.startsWith(';')) {
      infos.push({kind: 'comment', section})
      continue
    }
    const indent = line.text.length - line.text.trimStart().length
    if (owner !== undefined && indent > 0) {
      infos.push({kind: 'continuation', owner, section})
      continue
    }
    const header = SECTION.exec(line.text)
    if (header) {
      section = header[1]!.trim()
      owner = undefined
      infos.push({kind: 'section', name: section, section})
      continue
    }
    const option = OPTION.exec(line.text)
    if (option && section !== undefined) {
      owner = index
      infos.push({key: option[2]!.trim(), kind: 'option', section})
      continue
    }
    owner = undefined
    infos.push({kind: 'other', section})
  }
  return infos
}

/** Applies `settings` to `section` of an ini text. Pure; see the module comment for the rules. */
export function editIni(text: string, settings: readonly IniSetting[], options: IniEditOptions): IniEditResult {
  const split = splitLines(text)
  const {lines} = split
  const infos = classify(lines)
  const normalise = (key: string) => (options.caseRule === 'lowercase' ? key.toLowerCase() : key)
  const headerIndex = infos.findIndex((info) => info.kind === 'section' && info.name === options.section)
  if (headerIndex === -1) {
    throw new MigrateError(`${options.path} has no [${options.section}] section`, {
      exitCode: EXIT_CODES.badInput,
      suggestion: "Point the flag at the site's ckan.ini: the file with [app:main] that CKAN is started with.",
    })
  }

  const inSection = (index: number) => infos[index]!.section === options.section && infos[index]!.kind !== 'section'
  const optionLines = new Map<string, number[]>()
  for (const [index, info] of infos.entries()) {
    if (info.kind !== 'option' || !inSection(index)) continue
    const key = normalise(info.key)
    optionLines.set(key, [...(optionLines.get(key) ?? []), index])
  }
  const duplicates: IniDuplicate[] = []
  for (const [key, indexes] of optionLines)
    if (indexes.length > 1) duplicates.push({key, lines: indexes.map((index) => index + 1)})
  if (duplicates.length > 0) return {changes: [], duplicates, text}

  // End of the section's settings: its last option (or continuation) line, else its header.
  let sectionEnd = headerIndex
  for (let index = headerIndex + 1; index < infos.length; index += 1) {
    const info = infos[index]!
    if (info.kind === 'section') break
    if (info.kind === 'option' || info.kind === 'continuation') sectionEnd = index
  }

  const replacements = new Map<number, string>()
  const removed = new Set<number>()
  const insertions = new Map<number, Array<{key: string; text: string}>>()
  const planned: Array<{action: IniChangeAction; key: string; marker: string; secret: boolean}> = []
  for (const setting of settings) {
    assertIniValue(setting.key, setting.value)
    const escaped = escapeIniValue(setting.value)
    const key = normalise(setting.key)
    const existing = optionLines.get(key)?.[0]
    if (existing !== undefined) {
      const match = OPTION.exec(lines[existing]!.text)!
      const continuations = infos.flatMap((info, index) =>
        info.kind === 'continuation' && info.owner === existing ? [index] : [],
      )
      if (match[4]!.trim() === escaped && continuations.length === 0) continue
      let delimiter = match[3]!
      if (!/[ \t]$/.test(delimiter) && /^\s/.test(delimiter)) delimiter += ' '
      replacements.set(existing, `${match[1]}${match[2]}${delimiter}${escaped}`)
      for (const index of continuations) removed.add(index)
      planned.push({action: 'replace', key: setting.key, marker: `r${existing}`, secret: setting.secret})
      continue
    }
    let anchor = -1
    for (let index = headerIndex + 1; index < infos.length && infos[index]!.kind !== 'section'; index += 1) {
      const commented = infos[index]!.kind === 'comment' ? COMMENTED_OPTION.exec(lines[index]!.text) : null
      if (commented && normalise(commented[1]!) === key) anchor = index
    }
    const action: IniChangeAction = anchor === -1 ? 'append' : 'insert-after-comment'
    if (anchor === -1) anchor = sectionEnd
    const list = insertions.get(anchor) ?? []
    list.push({key: setting.key, text: `${setting.key} = ${escaped}`})
    insertions.set(anchor, list)
    planned.push({action, key: setting.key, marker: `i${anchor}:${list.length - 1}`, secret: setting.secret})
  }

  // Rebuild, remembering where each planned change ends up.
  const output: TextLine[] = []
  const positions = new Map<string, number>()
  const eol = dominantLineEnding(lines)
  for (const [index, line] of lines.entries()) {
    if (!removed.has(index)) {
      const replacement = replacements.get(index)
      if (replacement !== undefined) positions.set(`r${index}`, output.length)
      output.push(replacement === undefined ? {...line} : {eol: line.eol, text: replacement})
    } else if (line.eol === '' && output.length > 0) {
      // The removed continuation was the last line: keep the file's missing final newline.
      output.at(-1)!.eol = ''
    }
    const inserted = insertions.get(index)
    if (!inserted) continue
    const last = output.at(-1)!
    const anchorHadNoEol = last.eol === ''
    if (anchorHadNoEol) last.eol = eol
    // A new line ends like the line it follows (the file's usual ending after a last line without one).
    const lineEol = last.eol
    for (const [position, insertion] of inserted.entries()) {
      positions.set(`i${index}:${position}`, output.length)
      output.push({eol: lineEol, text: insertion.text})
    }
    if (anchorHadNoEol) output.at(-1)!.eol = ''
  }
  const changes = planned.map((change) => ({
    action: change.action,
    key: change.key,
    line: positions.get(change.marker)! + 1,
    secret: change.secret,
  }))
  return {changes, duplicates, text: changes.length === 0 ? text : joinLines({bom: split.bom, lines: output})}
}
