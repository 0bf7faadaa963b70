import {describe, expect, it} from 'vitest'

import {editEnvFile} from '../../src/lib/services/env-file-editor.js'

const XLOADER = {name: 'CKANEXT__XLOADER__API_TOKEN', secret: true, value: 'eyJ.new.token'}

describe('editEnvFile', () => {
  it('replaces in place keeping the export prefix and the quotes the line had', () => {
    const original = '# ckan\nexport CKANEXT__XLOADER__API_TOKEN="old"\nCKAN_SITE_ID=default\n'
    expect(editEnvFile(original, [XLOADER]).text).toBe(
      '# ckan\nexport CKANEXT__XLOADER__API_TOKEN="eyJ.new.token"\nCKAN_SITE_ID=default\n',
    )
  })

  it('puts a new variable after its commented-out line, else after the last assignment', () => {
    const original = 'A=1\n#CKANEXT__XLOADER__API_TOKEN=\nB=2\n\n# trailing comment\n'
    const {changes, text} = editEnvFile(original, [
      XLOADER,
      {name: 'CKAN__DATAPUSHER__API_TOKEN', secret: true, value: 'dp'},
    ])
    expect(text).toBe(
      'A=1\n#CKANEXT__XLOADER__API_TOKEN=\nCKANEXT__XLOADER__API_TOKEN=eyJ.new.token\nB=2\nCKAN__DATAPUSHER__API_TOKEN=dp\n\n# trailing comment\n',
    )
    expect(changes.map((change) => change.action)).toEqual(['insert-after-comment', 'append'])
  })

  it('keeps CRLF and a missing final newline, and quotes new values like the file does', () => {
    const original = 'A="1"\r\nB="two words"'
    expect(editEnvFile(original, [{...XLOADER, value: 'a"b$c'}]).text).toBe(
      'A="1"\r\nB="two words"\r\nCKANEXT__XLOADER__API_TOKEN="a\\"b$$c"',
    )
  })

  it('refuses a value an unquoted env file cannot hold, and reports duplicates', () => {
    expect(() => editEnvFile('A=1\n', [{...XLOADER, value: 'has space'}])).toThrow('cannot hold safely')
    const twice = 'A=1\nA=2\n'
    expect(editEnvFile(twice, [XLOADER])).toEqual({changes: [], duplicates: [{lines: [1, 2], name: 'A'}], text: twice})
  })

  it('changes nothing when the value is already there', () => {
    const original = 'CKANEXT__XLOADER__API_TOKEN=eyJ.new.token\n'
    expect(editEnvFile(original, [XLOADER]).changes).toEqual([])
  })
})
