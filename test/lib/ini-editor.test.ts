import {readFile} from 'node:fs/promises'
import {describe, expect, it} from 'vitest'

import {editIni, type IniSetting, splitLines} from '../../src/lib/services/ini-editor.js'
import {unifiedDiff} from '../../src/lib/services/unified-diff.js'

const XLOADER: IniSetting = {key: 'ckanext.xloader.api_token', secret: true, value: 'eyJ.new.token'}
const on29 = {caseRule: 'lowercase', path: 'ckan.ini', section: 'app:main'} as const

/** The text with the given 1-based lines removed: what must equal the original, byte for byte. */
function withoutLines(text: string, lineNumbers: number[]): string {
  const split = splitLines(text)
  const keep = split.lines.filter((_, index) => !lineNumbers.includes(index + 1))
  return (split.bom ? '\uFEFF' : '') + keep.map((line) => line.text + line.eol).join('')
}

describe('editIni', () => {
  it('appends a missing key after the last setting of [app:main] of a generated 2.9 ckan.ini, and nothing else changes', async () => {
    const original = await readFile('/work/shared/ckan-reference/ckan-2.9.11-generated.ini', 'utf8')
    const {changes, text} = editIni(original, [XLOADER], on29)
    expect(changes).toEqual([{action: 'append', key: XLOADER.key, line: expect.any(Number), secret: true}])
    const lines = text.split('\n')
    expect(lines[changes[0]!.line - 2]).toBe('ckan.jobs.timeout = 180')
    expect(lines[changes[0]!.line - 1]).toBe('ckanext.xloader.api_token = eyJ.new.token')
    expect(withoutLines(text, [changes[0]!.line])).toBe(original)
  })

  it('puts the new line right after a commented-out key (# or ;)', () => {
    const original =
      '[app:main]\nuse = egg:ckan\n#ckanext.xloader.api_token = put-yours-here\nckan.site_id = default\n; ckan.datapusher.api_token = x\nckan.plugins = xloader\n'
    const {changes, text} = editIni(
      original,
      [XLOADER, {key: 'ckan.datapusher.api_token', secret: true, value: 'dp'}],
      on29,
    )
    expect(text).toBe(
      '[app:main]\nuse = egg:ckan\n#ckanext.xloader.api_token = put-yours-here\nckanext.xloader.api_token = eyJ.new.token\nckan.site_id = default\n; ckan.datapusher.api_token = x\nckan.datapusher.api_token = dp\nckan.plugins = xloader\n',
    )
    expect(changes.map((change) => [change.action, change.line])).toEqual([
      ['insert-after-comment', 4],
      ['insert-after-comment', 7],
    ])
  })

  it('replaces an existing key in place, keeping its spelling and spacing, matching case-insensitively on 2.9', () => {
    const original = '[app:main]\nCkanext.XLoader.API_Token   :   old-value\nnext = 1\n'
    const {text} = editIni(original, [XLOADER], on29)
    expect(text).toBe('[app:main]\nCkanext.XLoader.API_Token   :   eyJ.new.token\nnext = 1\n')
  })

  it('treats differently cased keys as different on 2.10+ (case preserved)', () => {
    const original = '[app:main]\nCKANEXT.XLOADER.API_TOKEN = old\n'
    const {changes} = editIni(original, [XLOADER], {...on29, caseRule: 'preserve'})
    expect(changes[0]!.action).toBe('append')
  })

  it('writes % as %% and drops the continuation lines of a replaced value', () => {
    const original = '[app:main]\napi_token.jwt.encode.secret = string:old\n    more\nx = 1'
    const {text} = editIni(original, [{key: 'api_token.jwt.encode.secret', secret: true, value: 'string:50%off'}], on29)
    expect(text).toBe('[app:main]\napi_token.jwt.encode.secret = string:50%%off\nx = 1')
  })

  it('keeps CRLF, a BOM and a missing final newline; mixed files keep each line’s ending', () => {
    const crlf = '\uFEFF[app:main]\r\nckan.site_id = default\r\n# café ☕\r\nckan.plugins = xloader'
    const {text} = editIni(crlf, [XLOADER], on29)
    expect(text).toBe(
      '\uFEFF[app:main]\r\nckan.site_id = default\r\n# café ☕\r\nckan.plugins = xloader\r\nckanext.xloader.api_token = eyJ.new.token',
    )
    const mixed = '[app:main]\r\na = 1\nb = 2\r\n\r\n[loggers]\nkeys = root\n'
    expect(editIni(mixed, [XLOADER], on29).text).toBe(
      '[app:main]\r\na = 1\nb = 2\r\nckanext.xloader.api_token = eyJ.new.token\r\n\r\n[loggers]\nkeys = root\n',
    )
  })

  it('inserts before the comments and blank lines that introduce the next section', () => {
    const original = '[app:main]\na = 1\n\n## Logging configuration\n[loggers]\nkeys = root\n'
    expect(editIni(original, [XLOADER], on29).text).toBe(
      '[app:main]\na = 1\nckanext.xloader.api_token = eyJ.new.token\n\n## Logging configuration\n[loggers]\nkeys = root\n',
    )
  })

  it('changes nothing when the value is already there', () => {
    const original = '[app:main]\nckanext.xloader.api_token = eyJ.new.token\n'
    expect(editIni(original, [XLOADER], on29)).toEqual({changes: [], duplicates: [], text: original})
  })

  it('reports a duplicated key and leaves the text alone', () => {
    const original = '[app:main]\nckan.site_id = a\nCKAN.SITE_ID = b\n'
    const result = editIni(original, [XLOADER], on29)
    expect(result.duplicates).toEqual([{key: 'ckan.site_id', lines: [2, 3]}])
    expect(result.text).toBe(original)
  })

  it('refuses a file without the section and a value with a line break', () => {
    expect(() => editIni('[DEFAULT]\na = 1\n', [XLOADER], on29)).toThrow('has no [app:main] section')
    expect(() => editIni('[app:main]\n', [{...XLOADER, value: 'a\nb'}], on29)).toThrow('line breaks')
  })
})

describe('unifiedDiff', () => {
  it('shows hunks with context and redacted lines, and nothing for equal texts', () => {
    const before = 'a\nb\nc\nd\ne\nf\ng\nh\n'
    const after = 'a\nb\nc\nd\nSECRET\ne\nf\ng\nh\n'
    const diff = unifiedDiff(before, after, {
      newLabel: 'new',
      oldLabel: 'old',
      redactLine: (line) => line.replace('SECRET', '***'),
    })
    expect(diff).toBe('--- old\n+++ new\n@@ -2,6 +2,7 @@\n b\n c\n d\n+***\n e\n f\n g\n')
    expect(unifiedDiff(before, before, {newLabel: 'n', oldLabel: 'o'})).toBe('')
  })

  it('shows a replaced line as - then +, in unified-diff order, with correct hunk ranges', () => {
    const before = '[app:main]\nckan.site_id = default\nckanext.xloader.api_token = OLD\nckan.plugins = xloader\n'
    const after = '[app:main]\nckan.site_id = default\nckanext.xloader.api_token = NEW\nckan.plugins = xloader\n'
    expect(unifiedDiff(before, after, {context: 1, newLabel: 'b', oldLabel: 'a'})).toBe(
      '--- a\n+++ b\n@@ -2,3 +2,3 @@\n ckan.site_id = default\n-ckanext.xloader.api_token = OLD\n+ckanext.xloader.api_token = NEW\n ckan.plugins = xloader\n',
    )
    // Two old lines replaced by three new ones: every - line before every + line.
    const diff = unifiedDiff('a\nx\ny\nb\n', 'a\np\nq\nr\nb\n', {newLabel: 'b', oldLabel: 'a'})
    expect(diff).toBe('--- a\n+++ b\n@@ -1,4 +1,5 @@\n a\n-x\n-y\n+p\n+q\n+r\n b\n')
  })
})
