import {describe, expect, it} from 'vitest'

import {printable} from '../../../src/lib/audit/audit-summary.js'
import {decideVerdict} from '../../../src/lib/audit/verdict.js'

describe('printable', () => {
  it('shows tabs, line breaks and escape sequences in names as escapes, keeping unicode', () => {
    expect(printable('tab\tname')).toBe(String.raw`tab\tname`)
    expect(printable('line\r\nbreak')).toBe(String.raw`line\r\nbreak`)
    expect(printable('\u001B[2Jcleared')).toBe(String.raw`\x1b[2Jcleared`)
    expect(printable('zoë-ångström 山田太郎 🚀')).toBe('zoë-ångström 山田太郎 🚀')
  })
})

describe('decideVerdict', () => {
  const finding = (severity: 'blocker' | 'info' | 'warning') => ({
    count: 1,
    fix: '',
    id: severity,
    sample: [],
    severity,
    title: '',
  })
  it('is READY only without blockers, with the counts behind it', () => {
    expect(decideVerdict([finding('warning'), finding('info')], '2.11')).toEqual({
      blockers: 0,
      infos: 1,
      status: 'READY',
      target: '2.11',
      warnings: 1,
    })
    expect(decideVerdict([finding('blocker'), finding('blocker'), finding('info')], '2.12')).toEqual({
      blockers: 2,
      infos: 1,
      status: 'NOT READY',
      target: '2.12',
      warnings: 0,
    })
  })
})
