import {stringify} from 'csv-stringify'
import {dirname} from 'node:path'
import type {Writable} from 'node:stream'
import {pipeline} from 'node:stream/promises'

import {writeDurably} from './durable-file.js'
import {ensureFolder} from './secret-file.js'

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
 * atomically and durably (writeDurably), streaming rows so a million-row report needs no memory.
 * Every cell is neutralised. Reports never hold secrets; callers pass fingerprints, never values.
 */
export async function writeCsvReport<Row>(
  path: string,
  columns: ReadonlyArray<CsvColumn<Row>>,
  rows: AsyncIterable<Row> | Iterable<Row>,
): Promise<number> {
  // A report holds no secret: create its folder when missing, never change an existing one (/tmp).
  await ensureFolder(dirname(path))
  return writeDurably(path, (out) => writeCsvRows(out, columns, rows), {mode: 0o600})
}

/** Streams the CSV (BOM, header, neutralised rows) into `out` and ends it; returns the number of rows. */
export async function writeCsvRows<Row>(
  out: Writable,
  columns: ReadonlyArray<CsvColumn<Row>>,
  rows: AsyncIterable<Row> | Iterable<Row>,
): Promise<number> {
  let count = 0
  const stringifier = stringify({bom: true, header: true, columns: columns.map((column) => column.header)})
  const feed = async function* () {
    for await (const row of rows) {
      count += 1
      yield columns.map((column) => neutraliseCell(column.value(row)))
    }
  }
  await pipeline(feed, stringifier, out)
  return count
}
