import {parse} from 'csv-parse/sync'
import {mkdtemp, readFile, stat} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'

import {writeCsvReport} from '../../../src/lib/fs/csv-report.js'

describe('writeCsvReport', () => {
  it('neutralises cells a spreadsheet would evaluate and keeps unicode, quotes and newlines intact', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'csv-'))
    const path = join(dir, 'reports', 'users.csv')
    const rows = [
      {name: '=HYPERLINK("http://x")', note: 'plain'},
      {name: '+cmd', note: '-2+3'},
      {name: '@sum', note: '\tTAB'},
      {name: 'Zoë, "quoted"\nline', note: '\rCR'},
    ]
    const count = await writeCsvReport(
      path,
      [
        {header: 'name', value: (row) => row.name},
        {header: 'note', value: (row) => row.note},
      ],
      rows,
    )
    expect(count).toBe(4)
    const text = await readFile(path, 'utf8')
    expect(text.startsWith('\uFEFF')).toBe(true)
    const parsed = parse(text.slice(1), {columns: true}) as Array<{name: string; note: string}>
    expect(parsed).toEqual([
      {name: `'=HYPERLINK("http://x")`, note: 'plain'},
      {name: "'+cmd", note: "'-2+3"},
      {name: "'@sum", note: "'\tTAB"},
      {name: 'Zoë, "quoted"\nline', note: "'\rCR"},
    ])
    expect((await stat(path)).mode & 0o777).toBe(0o600)
  })
})

describe('report folders', () => {
  it('leaves an existing folder (think /tmp) as it is', async () => {
    const {chmod} = await import('node:fs/promises')
    const dir = await mkdtemp(join(tmpdir(), 'csv-'))
    await chmod(dir, 0o1777)
    await writeCsvReport(join(dir, 'audit.csv'), [{header: 'n', value: (row: number) => row}], [1, 2])
    expect((await stat(dir)).mode & 0o7777).toBe(0o1777)
    expect((await stat(join(dir, 'audit.csv'))).mode & 0o777).toBe(0o600)
  })
})
