import {mkdtemp, readFile, stat} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'

import {type PasswordRow, PasswordsSheet, readPasswordsCsv} from '../../../src/lib/bundle/passwords-csv.js'
import {neutraliseCell, writeCsvReport} from '../../../src/lib/fs/csv-report.js'
import {Secret} from '../../../src/lib/secret.js'

const row = (user: string, password = `pw-${user.length}-Kp7w`, email = ''): PasswordRow => ({
  email,
  file: `${user.replaceAll(/[^a-z0-9]/g, '') || 'x'}.dcor-access`,
  password: new Secret(password),
  user,
})

/** passwords.csv as writeCsvReport (csv-stringify) writes it: the format the sheet must keep. */
async function csvStringified(path: string, rows: PasswordRow[]): Promise<string> {
  const sorted = [...rows].sort((a, b) => (a.user < b.user ? -1 : a.user > b.user ? 1 : 0))
  await writeCsvReport(
    path,
    [
      {header: 'user', value: (entry: PasswordRow) => entry.user},
      {header: 'email', value: (entry: PasswordRow) => entry.email},
      {header: 'file', value: (entry: PasswordRow) => entry.file},
      {header: 'password', value: (entry: PasswordRow) => entry.password.reveal()},
    ],
    sorted,
  )
  return readFile(path, 'utf8')
}

describe('PasswordsSheet', () => {
  it('writes what csv-stringify writes for hostile names, after rows are added, replaced and renamed in batches', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'passwords-sheet-'))
    const hostile = [
      'alice',
      '=HYPERLINK("http://x")',
      '+cmd',
      '-minus',
      '@at',
      '\ttab',
      '\rcr',
      'comma,name',
      'quote"name',
      'new\nline',
      'Zoë Ångström',
      '',
      "'already",
      'bob',
    ]
    const sheet = new PasswordsSheet()
    const expected = new Map<string, PasswordRow>()
    const set = (entry: PasswordRow) => {
      sheet.set(neutraliseCell(entry.user), entry)
      expected.set(neutraliseCell(entry.user), entry)
    }
    const check = async (label: string) => {
      await sheet.write(join(dir, 'passwords.csv'))
      const wanted = await csvStringified(join(dir, 'reference.csv'), [...expected.values()])
      expect(await readFile(join(dir, 'passwords.csv'), 'utf8'), label).toBe(wanted)
    }
    await check('empty')
    for (const user of hostile.slice(0, 5)) set(row(user))
    await check('first batch')
    for (const user of hostile.slice(5)) set(row(user, `pw, "${user}"\n`, `${user}@example.org`))
    await check('second batch')
    // A new password for some (same place), and a row read back from the file (neutralised user).
    set(row('alice', 'another-password'))
    set(row('+cmd', '=starts-with-formula'))
    const reread = await readPasswordsCsv(join(dir, 'passwords.csv'))
    const neutralised = reread.get(neutraliseCell('=HYPERLINK("http://x")'))!
    sheet.set(neutraliseCell(neutralised.user), neutralised)
    expected.set(neutraliseCell(neutralised.user), neutralised)
    await check('replaced rows')
    expect((await stat(join(dir, 'passwords.csv'))).mode & 0o777).toBe(0o600)
    expect(sheet.size).toBe(hostile.length)
    // What it wrote reads back as the rows it was given (neutralised).
    const back = await readPasswordsCsv(join(dir, 'passwords.csv'))
    expect(back.get('alice')?.password.reveal()).toBe('another-password')
    expect(back.get('new\nline')?.password.reveal()).toBe('pw, "new\nline"\n')
  })
})
