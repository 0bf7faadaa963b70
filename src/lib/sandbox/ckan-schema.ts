import {readFile} from 'node:fs/promises'

import type {Queryable} from '../db/ckan-database.js'

export const CKAN_VERSIONS = ['2.9', '2.10', '2.11'] as const
export type CkanVersion = (typeof CKAN_VERSIONS)[number]

/** alembic_version.version_num of an up-to-date database of each version (ckan-reference/README.md). */
export const ALEMBIC_HEADS: Record<CkanVersion, string> = {
  '2.10': '9f33a0280c51',
  '2.11': '4a5e3465beb6',
  '2.9': 'ccd38ad5fced',
}

/** The full CKAN version each emulated version reports in status_show. */
export const CKAN_RELEASES: Record<CkanVersion, string> = {'2.10': '2.10.10', '2.11': '2.11.5', '2.9': '2.9.11'}

// schema/ sits at the package root; this file is at src/lib/sandbox or dist/lib/sandbox.
const SCHEMA_FOLDER = new URL('../../../schema/', import.meta.url)

export function isCkanVersion(value: string): value is CkanVersion {
  return (CKAN_VERSIONS as readonly string[]).includes(value)
}

/** The SQL that recreates a CKAN version's schema (identical to the reference pg_dump). */
export async function readCkanSchemaSql(version: CkanVersion): Promise<string> {
  return readFile(new URL(`ckan-${version}.sql`, SCHEMA_FOLDER), 'utf8')
}

/**
 * Creates the CKAN schema of `version` in an empty database and records the alembic head, as
 * `ckan db init` would; with `harvest`, also ckanext-harvest's harvest_source table.
 */
export async function createCkanSchema(
  sql: Queryable,
  version: CkanVersion,
  options: {harvest?: boolean} = {},
): Promise<void> {
  await sql.query(await readCkanSchemaSql(version))
  await sql.query('INSERT INTO public.alembic_version (version_num) VALUES ($1)', [ALEMBIC_HEADS[version]])
  if (options.harvest) await sql.query(await readFile(new URL('ckanext-harvest.sql', SCHEMA_FOLDER), 'utf8'))
}
