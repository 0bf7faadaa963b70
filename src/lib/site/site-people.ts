import {readOnlyTransaction, withCkanDatabase} from './ckan-database.js'
import {resolveSiteDatabase} from './site-database.js'

/** What bundle and deliver need to know of a person: where to write, how to greet, whether active. */
export type SitePerson = {email: null | string; fullname: null | string; state: string}

/**
 * The people of a run as the CKAN database has them (email, full name, state), read-only, in
 * batches of 5,000 ids; users the database does not know are absent from the map.
 */
export async function readSitePeople(
  database: {ckanIni?: string; databaseUrl?: string},
  userIds: readonly string[],
): Promise<Map<string, SitePerson>> {
  const {url} = await resolveSiteDatabase({ckanIniPath: database.ckanIni, databaseUrl: database.databaseUrl})
  return withCkanDatabase(url, {statementTimeoutMs: 60_000}, ({client}) =>
    readOnlyTransaction(client, async () => {
      const people = new Map<string, SitePerson>()
      for (let start = 0; start < userIds.length; start += 5000) {
        const {rows} = await client.query<SitePerson & {id: string}>(
          'SELECT id, email, fullname, state FROM "user" WHERE id = ANY($1::text[])',
          [userIds.slice(start, start + 5000)],
        )
        for (const row of rows) people.set(row.id, {email: row.email, fullname: row.fullname, state: row.state})
      }
      return people
    }),
  )
}
