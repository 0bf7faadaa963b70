import {describe, expect, it} from 'vitest'

import {safeFileName, safeFileNames} from '../../../src/lib/fs/safe-file-name.js'
import {HOSTILE_USERS} from '../../../src/sandbox/ckan-site-seeder.js'

describe('safeFileName', () => {
  it('keeps clean CKAN names as they are', () => {
    for (const name of ['alice', 'user-42', 'a_b', 'x'.repeat(64)]) expect(safeFileName(name)).toBe(name)
  })

  it('turns anything else into a portable slug plus a hash of the original name', () => {
    expect(safeFileName('../../etc/passwd')).toMatch(/^etc-passwd\.[0-9a-f]{8}$/)
    expect(safeFileName('a/b\\c')).toMatch(/^a-b-c\.[0-9a-f]{8}$/)
    expect(safeFileName('tab\tname')).toMatch(/^tab-name\.[0-9a-f]{8}$/)
    expect(safeFileName('zoë-ångström')).toMatch(/^zoe-angstrom\.[0-9a-f]{8}$/)
    expect(safeFileName('山田')).toMatch(/^user\.[0-9a-f]{8}$/)
    expect(safeFileName('-2+3')).toMatch(/^2-3\.[0-9a-f]{8}$/)
    expect(safeFileName('Alice')).toMatch(/^alice\.[0-9a-f]{8}$/)
    expect(safeFileName('x'.repeat(65)).length).toBeLessThanOrEqual(64)
  })

  it('never gives a Windows device name, with or without an extension', () => {
    for (const name of ['con', 'NUL', 'com1', 'lpt9', 'aux.txt', 'prn']) {
      const file = safeFileName(name)
      expect(file.split('.')[0]).not.toMatch(/^(con|nul|prn|aux|com\d|lpt\d)$/i)
    }
  })

  it('is deterministic', () => {
    expect(safeFileName('../../etc/passwd')).toBe(safeFileName('../../etc/passwd'))
  })
})

describe('safeFileNames', () => {
  it('gives the hostile users distinct, portable names that stay in their folder', () => {
    const files = safeFileNames(HOSTILE_USERS.map((user) => user.name))
    expect(new Set(files.values()).size).toBe(HOSTILE_USERS.length)
    for (const file of files.values()) {
      expect(file).toMatch(/^[a-z0-9][a-z0-9_.-]{0,63}$/)
      expect(file).not.toContain('..')
    }
  })

  it("cannot be steered onto another user's file by choosing a look-alike name", () => {
    const victim = safeFileName('Zoë')
    // A name spelled like the victim's file name is not clean (it has a dot), so it is hashed too.
    const files = safeFileNames(['Zoë', victim, victim.toUpperCase()])
    expect(new Set([...files.values()].map((file) => file.toLowerCase())).size).toBe(3)
    expect(files.get('Zoë')).toBe(victim)
  })
})
