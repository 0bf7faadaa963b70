import pg from 'pg'

import {createCkanSchema} from '../src/sandbox/ckan-schema.js'
import {seedCkanSite} from '../src/sandbox/ckan-site-seeder.js'
import type {BenchResult} from './run.js'
import {benchDatabase} from './support/bench-database.js'

/** Issue 2: one million users seeded in under a minute. */
export default async function seederBench(): Promise<BenchResult> {
  const rows: string[] = []
  for (const users of [100_000, 1_000_000]) {
    const database = await benchDatabase()
    const client = new pg.Client({connectionString: database.url})
    await client.connect()
    await createCkanSchema(client, '2.9', {harvest: true})
    const started = performance.now()
    await seedCkanSite(client, {harvestSources: true, seed: 'bench', siteId: 'default', users, version: '2.9'})
    const seconds = (performance.now() - started) / 1000
    const {rows: counts} = await client.query(`SELECT count(*)::int AS n, count(apikey)::int AS keys FROM "user"`)
    await client.end()
    await database.release()
    rows.push(
      `| ${users.toLocaleString('en')} | ${counts[0].n.toLocaleString('en')} | ${counts[0].keys.toLocaleString('en')} | ${seconds.toFixed(1)} s | ${database.engine} |`,
    )
  }
  return {
    markdown: `Command: \`npm run bench -- seeder\` (seeds a CKAN 2.9 schema with \`seedCkanSite\`, timing the seeding alone).

| users requested | users seeded | with legacy key | time | engine |
| --- | --- | --- | --- | --- |
${rows.join('\n')}

Target (issue 2): one million users in under a minute.`,
    title: 'Seeding a CKAN site',
  }
}
