import {describe, expect, it} from 'vitest'

import {
  generatePassword,
  PASSWORD_ALPHABET,
  PASSWORD_BITS,
  parseCsv,
  parsePasswordFile,
} from '../../../src/lib/bundle/passwords.js'
import {MigrateError} from '../../../src/lib/errors.js'

describe('generatePassword', () => {
  it('gives at least 128 bits from an alphabet without look-alikes, grouped by four', () => {
    expect(PASSWORD_BITS).toBeGreaterThanOrEqual(128)
    expect(PASSWORD_ALPHABET).not.toMatch(/[0O1lI]/)
    const seen = new Set<string>()
    for (let index = 0; index < 200; index += 1) {
      const password = generatePassword().reveal()
      expect(password).toMatch(/^([2-9A-HJ-NP-Za-km-z]{4}-){5}[2-9A-HJ-NP-Za-km-z]{4}$/)
      seen.add(password)
    }
    expect(seen.size).toBe(200)
  })

  it('redacts itself', () => {
    expect(String(generatePassword())).toBe('[redacted]')
  })
})

describe('parseCsv', () => {
  it('reads quoted fields, doubled quotes, CRLF, a BOM, and skips blank lines', () => {
    expect(parseCsv('\uFEFFa,"b,c"\r\n\r\n"say ""hi""",d\n').map((row) => row.cells)).toEqual([
      ['a', 'b,c'],
      ['say "hi"', 'd'],
    ])
  })
})

describe('parsePasswordFile', () => {
  const parseError = (text: string) => {
    try {
      parsePasswordFile(text, 'pw.csv')
    } catch (error) {
      return error as MigrateError
    }
    throw new Error('no error')
  }

  it('reads user,password lines with an optional header', () => {
    const passwords = parsePasswordFile('user,password\nalice,  long enough pw  \nbob,"comma, inside it"\n', 'pw.csv')
    expect(passwords.get('alice')?.reveal()).toBe('long enough pw')
    expect(passwords.get('bob')?.reveal()).toBe('comma, inside it')
  })

  it('refuses short, duplicated, formula-like or malformed entries, naming the line but never the password', () => {
    const cases: Array<[string, RegExp]> = [
      ['alice,short1\n', /line 1: the password is shorter than 12/],
      ['alice,long enough pw\nalice,another long pw\n', /line 2: user "alice" is listed twice/],
      ['alice,=cmd|calc long enough\n', /line 1: the password starts with = \+ - or @/],
      ['alice\n', /line 1: expected 2 fields/],
      [',long enough pw\n', /line 1: the user name is empty/],
      ['', /holds no passwords/],
      ['alice,"unterminated\n', /unterminated quoted field/],
    ]
    for (const [text, message] of cases) {
      const error = parseError(text)
      expect(error).toBeInstanceOf(MigrateError)
      expect(error.exitCode).toBe(7)
      expect(error.message).toMatch(message)
      expect(error.message).not.toMatch(/short1|enough|cmd/)
    }
  })
})
