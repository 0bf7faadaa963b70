import {readFile} from 'node:fs/promises'

import type {Queryable} from '../lib/site/ckan-database.js'
import {ALEMBIC_HEADS, type CkanVersion} from '../lib/site/ckan-version.js'

// schema/ sits at the package root; this file is at src/sandbox or dist/sandbox.
const SCHEMA_FOLDER = new URL('../../schema/', import.meta.url)

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
