import {dirname, resolve} from 'node:path'

import {EXIT_CODES, MigrateError} from '../errors.js'
import {readFailure, readInputText, SMALL_FILE_LIMIT} from '../fs/input-file.js'

/**
 * Reads a ckan.ini the way CKAN does (ckan-facts §7): Python ConfigParser with basic
 * interpolation, section [app:main] plus [DEFAULT], `%(here)s` and `%(__file__)s`, `use = config:`
 * chains (the top file wins), 2.9 lowercasing option names (2.10+ keeps case), full-line `#`/`;`
 * comments only (an inline `#` is part of the value), `=` or `:` delimiters, indented continuation
 * lines. It only reads: src/lib/services/ini-editor.ts changes files.
 */

export type IniCaseRule = 'lowercase' | 'preserve'

export type CkanIniOptions = {
  /** CKAN 2.9 lowercases option names ('lowercase', the default); 2.10+ keep case ('preserve'). */
  caseRule?: IniCaseRule
  /** Environment for 2.10+'s `%(CKAN_*)s` defaults. Defaults to process.env. */
  env?: NodeJS.ProcessEnv
}

export type IniEntry = {
  /** 1-based line of the key in `file`. */
  line: number
  /** The name as written in the file. */
  name: string
  /** The value as written (continuation lines joined with \n), before interpolation. */
  raw: string
  section: string
}

export type IniFile = {
  /** Every `key = value` line, in order, for every section. */
  entries: IniEntry[]
  path: string
  /** 1-based line of each section header, in the order of `sections`. */
  sectionLines: number[]
  /** Names of the sections in order. */
  sections: string[]
  text: string
}

const SECTION = /^\s*\[([^\]]+)\]\s*$/
const OPTION = /^([^:=\s][^:=]*?)\s*[:=]\s?(.*)$/

/** Parses one ini file's text into entries (no interpolation, no chains). Throws on malformed lines. */
export function parseIniText(text: string, path: string): IniFile {
  const lines = text.split(/\r?\n/)
  const entries: IniEntry[] = []
  const sections: string[] = []
  const sectionLines: number[] = []
  let section: string | undefined
  let current: (IniEntry & {indent: number}) | undefined
  for (const [index, line] of lines.entries()) {
    const trimmed = line.trim()
    if (trimmed === '' || trimmed.startsWith('#') || trimmed.startsWith(';')) {
      if (trimmed === '') current = undefined
      continue
    }
    const indent = line.length - line.trimStart().length
    if (current && indent > current.indent) {
      current.raw = `${current.raw}\n${trimmed}`
      continue
    }
    const header = SECTION.exec(line)
    if (header) {
      section = header[1]!.trim()
      sections.push(section)
      sectionLines.push(index + 1)
      current = undefined
      continue
    }
    const option = OPTION.exec(trimmed)
    if (!option) {
      throw new MigrateError(`${path} line ${index + 1} is not a setting, a section or a comment`, {
        exitCode: EXIT_CODES.badInput,
        suggestion:
          'Fix that line of ckan.ini (settings look like "key = value"); CKAN would not start with it either.',
      })
    }
    if (section === undefined) {
      throw new MigrateError(`${path} line ${index + 1} comes before any [section] header`, {
        exitCode: EXIT_CODES.badInput,
        suggestion: 'A ckan.ini starts with a section such as [DEFAULT] or [app:main].',
      })
    }
    current = {indent, line: index + 1, name: option[1]!.trim(), raw: option[2]!.trim(), section}
    entries.push(current)
  }
  return {entries, path, sectionLines, sections, text}
}

export type CkanIniValue = {file: string; line: number; name: string; raw: string}

export class CkanIni {
  readonly caseRule: IniCaseRule
  /** Keys set more than once in one file's [app:main]: CKAN's ConfigParser refuses such a file. */
  readonly duplicates: Array<{file: string; key: string; lines: number[]}>
  /** Every file of the `use = config:` chain, top first. */
  readonly files: IniFile[]
  /** Top file's absolute path. */
  readonly path: string
  readonly #defaults: Map<string, {file: string; raw: string}>
  readonly #env: NodeJS.ProcessEnv
  readonly #values: Map<string, CkanIniValue>

  constructor(files: IniFile[], options: CkanIniOptions = {}) {
    this.files = files
    this.path = files[0]!.path
    this.caseRule = options.caseRule ?? 'lowercase'
    this.#env = options.env ?? process.env
    this.#values = new Map()
    this.#defaults = new Map()
    this.duplicates = []
    for (const file of files) {
      const seen = new Map<string, number[]>()
      for (const entry of file.entries) {
        const key = this.normaliseKey(entry.name)
        if (entry.section === 'DEFAULT') {
          if (!this.#defaults.has(key)) this.#defaults.set(key, {file: file.path, raw: entry.raw})
          continue
        }
        if (entry.section !== 'app:main') continue
        seen.set(key, [...(seen.get(key) ?? []), entry.line])
        // Within one file the last occurrence would win; across the chain the top file wins.
        const existing = this.#values.get(key)
        if (!existing || existing.file === file.path)
          this.#values.set(key, {file: file.path, line: entry.line, name: entry.name, raw: entry.raw})
      }
      for (const [key, lines] of seen) if (lines.length > 1) this.duplicates.push({file: file.path, key, lines})
    }
  }

  /** The interpolated value of a key in [app:main] (or [DEFAULT]), or undefined when unset. */
  get(key: string): string | undefined {
    const normalised = this.normaliseKey(key)
    const value = this.#values.get(normalised)
    if (value) return this.#interpolate(value.raw, value.file, normalised, 0)
    const fallback = this.#defaults.get(normalised)
    return fallback ? this.#interpolate(fallback.raw, fallback.file, normalised, 0) : undefined
  }

  /** True when the key is set (even to an empty value). */
  has(key: string): boolean {
    const normalised = this.normaliseKey(key)
    return this.#values.has(normalised) || this.#defaults.has(normalised)
  }

  /** Every key set in [app:main] across the chain (normalised names). */
  keys(): string[] {
    return [...this.#values.keys()]
  }

  /** Applies CKAN's optionxform: lowercase on 2.9, as written on 2.10+. */
  normaliseKey(key: string): string {
    return this.caseRule === 'lowercase' ? key.toLowerCase() : key
  }

  /** `ckan.plugins`, split on white space. */
  plugins(): string[] {
    return (this.get('ckan.plugins') ?? '').split(/\s+/).filter(Boolean)
  }

  /** The uninterpolated text of a key, as written. */
  raw(key: string): string | undefined {
    const normalised = this.normaliseKey(key)
    return this.#values.get(normalised)?.raw ?? this.#defaults.get(normalised)?.raw
  }

  /** Where a key of [app:main] is defined: which file of the chain, which line. */
  where(key: string): CkanIniValue | undefined {
    return this.#values.get(this.normaliseKey(key))
  }

  #interpolate(raw: string, file: string, key: string, depth: number): string {
    if (depth > 10) throw interpolationError(file, key, 'interpolation is nested too deep (a loop?)')
    let result = ''
    let index = 0
    while (index < raw.length) {
      const at = raw.indexOf('%', index)
      if (at === -1) {
        result += raw.slice(index)
        break
      }
      result += raw.slice(index, at)
      const next = raw[at + 1]
      if (next === '%') {
        result += '%'
        index = at + 2
        continue
      }
      const match = /^%\(([^)]+)\)s/.exec(raw.slice(at))
      if (!match) throw interpolationError(file, key, `a lone "%" (write "%%" for a literal percent sign)`)
      const name = this.normaliseKey(match[1]!)
      result += this.#lookup(name, file, key, depth)
      index = at + match[0].length
    }
    return result
  }

  #lookup(name: string, file: string, key: string, depth: number): string {
    if (name === 'here') return dirname(file)
    if (name === '__file__') return file
    const value = this.#values.get(name)
    if (value) return this.#interpolate(value.raw, value.file, name, depth + 1)
    const fallback = this.#defaults.get(name)
    if (fallback) return this.#interpolate(fallback.raw, fallback.file, name, depth + 1)
    // CKAN 2.10+ injects every CKAN_* environment variable as a ConfigParser default.
    if (this.caseRule === 'preserve' && name.startsWith('CKAN_') && this.#env[name] !== undefined)
      return this.#env[name]!.replaceAll('%', '%%')
    throw interpolationError(file, key, `it refers to %(${name})s, which is not set`)
  }
}

function interpolationError(file: string, key: string, reason: string): MigrateError {
  return new MigrateError(`${file}: the value of ${key} cannot be interpolated: ${reason}`, {
    exitCode: EXIT_CODES.badInput,
    suggestion: 'Fix that line of ckan.ini; CKAN reads it with the same rules and would fail too.',
  })
}

/**
 * Reads a ckan.ini and its `use = config:` chain. Missing, unreadable or malformed files, a file
 * without [app:main], a broken chain and circular chains are one-line MigrateErrors (exit 7).
 */
export async function readCkanIni(path: string, options: CkanIniOptions = {}): Promise<CkanIni> {
  const files: IniFile[] = []
  let next: string | undefined = resolve(path)
  while (next) {
    if (files.some((file) => file.path === next)) {
      throw new MigrateError(`${path}: the use = config: chain loops back to ${next}`, {
        exitCode: EXIT_CODES.badInput,
        suggestion: 'Fix the "use = config:" lines so the chain ends in "use = egg:ckan".',
      })
    }
    const file = parseIniText(await readIniFile(next, files.length === 0 ? undefined : files.at(-1)!.path), next)
    assertNoDuplicates(file)
    if (!file.sections.includes('app:main')) {
      throw new MigrateError(`${next} has no [app:main] section`, {
        exitCode: EXIT_CODES.badInput,
        suggestion: "Point --ckan-ini at the site's ckan.ini (the file with [app:main] that CKAN is started with).",
      })
    }
    files.push(file)
    const use = file.entries.find((entry) => entry.section === 'app:main' && entry.name.toLowerCase() === 'use')
    next =
      use && use.raw.startsWith('config:') ? resolve(dirname(next), use.raw.slice('config:'.length).trim()) : undefined
  }
  return new CkanIni(files, options)
}

/**
 * CKAN reads every file of the chain with Python's ConfigParser (2.9's loader) or RawConfigParser
 * (2.10+'s `_unwrap_config_chain`, ckan/cli/__init__.py), both strict by default: a section
 * written twice in one file (DuplicateSectionError), or an option written twice in one section of
 * one file (DuplicateOptionError), stops CKAN. Option names are compared lowercased (the default
 * optionxform of the parser that reads the chain, on every version); `[DEFAULT]` may appear more
 * than once (configparser merges it), but an option repeated across its headers is a duplicate.
 * Duplicates across files of the chain are allowed: each file is a separate read().
 */
function assertNoDuplicates(file: IniFile): void {
  const sectionAt = new Map<string, number>()
  for (const [index, name] of file.sections.entries()) {
    const line = file.sectionLines[index]!
    const first = sectionAt.get(name)
    if (first !== undefined && name !== 'DEFAULT') {
      throw new MigrateError(`${file.path} has the section [${name}] more than once (lines ${first}, ${line})`, {
        exitCode: EXIT_CODES.badInput,
        suggestion: `CKAN’s ConfigParser refuses such a file (DuplicateSectionError): merge the two [${name}] sections into one, then run again.`,
      })
    }
    if (first === undefined) sectionAt.set(name, line)
  }
  const optionAt = new Map<string, number>()
  for (const entry of file.entries) {
    const key = `${entry.section}\u0000${entry.name.toLowerCase()}`
    const first = optionAt.get(key)
    if (first !== undefined) {
      throw new MigrateError(
        `${file.path} sets ${entry.name} more than once in [${entry.section}] (lines ${first}, ${entry.line})`,
        {
          exitCode: EXIT_CODES.badInput,
          suggestion:
            'CKAN’s ConfigParser refuses such a file (DuplicateOptionError; names are compared without case): delete all but one of those lines, then run again.',
        },
      )
    }
    optionAt.set(key, entry.line)
  }
}

async function readIniFile(path: string, usedBy: string | undefined): Promise<string> {
  try {
    const text = await readInputText(path, {maxBytes: SMALL_FILE_LIMIT})
    return text.startsWith('\uFEFF') ? text.slice(1) : text
  } catch (error) {
    throw new MigrateError(
      `The ckan.ini ${path} ${readFailure(error)}${usedBy ? ` (named by use = config: in ${usedBy})` : ''}`,
      {
        cause: error,
        exitCode: EXIT_CODES.badInput,
        suggestion: 'Pass --ckan-ini with the path of the ckan.ini the site runs with, readable by this user.',
      },
    )
  }
}
