import {stringify} from 'csv-stringify'
import {randomUUID} from 'node:crypto'
import {createWriteStream} from 'node:fs'
import {open, rename, rm} from 'node:fs/promises'
import {dirname, join} from 'node:path'
import {pipeline} from 'node:stream/promises'

import {ensureFolder, syncFolder} from './secret-file.js'

/** Cells starting with these make spreadsheets evaluate a formula (CSV injection). */
const FORMULA_START = /^[=+\-@\t\r]/

/**
 * Makes a cell safe to open in a spreadsheet: a value beginning with =, +, -, @, tab or CR is
 * prefixed with a single quote so Excel, LibreOffice and Google Sheets show it as text.
 */
export function neutraliseCell(value: unknown): string {
  if (value === null || value === undefined) return ''
  const text = typeof value === 'string' ? value : String(value)
  return FORMULA_START.test(text) ? `'${text}` : text
}

export type CsvColumn<Row> = {header: string; value: (row: Row) => boolean | number | string | null | undefined}

/**
 * Writes a UTF-8 CSV report (with a BOM so spreadsheets read UTF-8), 0600 (its folder is made 0700 when we create it),
 * atomically, streaming rows so a million-row report needs no memory. Every cell is neutralised.
 * Reports never hold secrets; callers pass fingerprints, never values.
 */
export async function writeCsvReport<Row>(
  path: string,
  columns: ReadonlyArray<CsvColumn<Row>>,
  rows: AsyncIterable<Row> | Iterable<Row>,
): Promise<number> {
  const folder = dirname(path)
  // A report holds no secret: create its folder when missing, never change an existing one (/tmp).
  await ensureFolder(folder)
  const temporary = join(folder, `.${randomUUID()}.csv.tmp`)
  let count = 0
  const stringifier = stringify({bom: true, header: true, columns: columns.map((column) => column.header)})
  const feed = async function* () {
    for await (const row of rows) {
      count += 1
      yield columns.map((column) => neutraliseCell(column.value(row)))
    }
  }
  try {
    const out = createWriteStream(temporary, {flags: 'wx', mode: 0o600})
    await pipeline(feed, stringifier, out)
    const handle = await open(temporary, 'r')
    await handle.sync()
    await handle.close()
    await rename(temporary, path)
    await syncFolder(folder)
  } catch (error) {
    await rm(temporary, {force: true})
    throw error
  }
  return count
}
