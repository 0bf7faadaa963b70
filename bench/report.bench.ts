import {stat} from 'node:fs/promises'
import {loadavg} from 'node:os'
import pg from 'pg'

import {createCkanSchema} from '../src/sandbox/ckan-schema.js'
import {seedCkanSite} from '../src/sandbox/ckan-site-seeder.js'
import {BUILD, buildCli, type Measure, measure, median} from './audit.bench.js'
import type {BenchResult} from './run.js'
import {benchDatabase} from './support/bench-database.js'

const ROUNDS = 5

/**
 * Issue 21: writing the readiness page (`audit --html FILE`) adds at most 10 % to the audit's
 * time at 100,000 users, and the page stays at most 1 MB, flat as the site grows. The compiled
 * CLI runs as a child process (as installed); after a warm-up, ROUNDS interleaved rounds of
 * `audit --json` and `audit --json --html FILE`; the ratio is the median of the rounds' ratios.
 */
export default async function reportBench(): Promise<BenchResult> {
  await buildCli()
  const rows: string[] = []
  const figures: Array<{bytes: number; ratio: number; users: number}> = []
  let engine = ''
  for (const users of [10_000, 100_000]) {
    const database = await benchDatabase()
    engine = database.engine
    try {
      const client = new pg.Client({connectionString: database.url})
      await client.connect()
      await createCkanSchema(client, '2.9', {harvest: true})
      await seedCkanSite(client, {harvestSources: true, seed: 'bench', siteId: 'default', users, version: '2.9'})
      await client.query('VACUUM ANALYZE')
      await client.end()
      const page = `${BUILD}readiness-${users}.html`
      const audit = (extra: string[]) =>
        measure(
          process.execPath,
          [`${BUILD}bin/run.js`, 'audit', '--database-url', database.url, '--json', ...extra],
          10,
        )
      await audit([])
      await audit(['--html', page])
      const rounds: Array<{html: Measure; plain: Measure}> = []
      for (let round = 0; round < ROUNDS; round++) {
        rounds.push({plain: await audit([]), html: await audit(['--html', page])})
      }
      const plain = median(rounds.map((round) => round.plain.seconds))
      const html = median(rounds.map((round) => round.html.seconds))
      const ratio = median(rounds.map((round) => round.html.seconds / round.plain.seconds))
      const cpuPlain = median(rounds.map((round) => round.plain.cpuSeconds))
      const cpuHtml = median(rounds.map((round) => round.html.cpuSeconds))
      const rss = Math.max(...rounds.map((round) => round.html.maxRssMb))
      const {size: bytes} = await stat(page)
      figures.push({bytes, ratio, users})
      rows.push(
        `| ${users.toLocaleString('en')} | ${plain.toFixed(2)} s | ${html.toFixed(2)} s | ${ratio.toFixed(3)}× | ${cpuPlain.toFixed(2)} s → ${cpuHtml.toFixed(2)} s (+${(cpuHtml - cpuPlain).toFixed(2)} s) | ${(bytes / 1024).toFixed(1)} KiB | ${rss} MB | ${loadavg()[0]!.toFixed(1)} |`,
      )
      console.error(`bench report: ${rows.at(-1)}`)
    } finally {
      await database.release()
    }
  }
  // What the charting library alone costs to load: a bare node, one that imports Plot (with d3) and
  // linkedom from their packages, and one that imports the build's bundle of the three.
  const node = (code: string) => measure(process.execPath, ['--input-type=module', '-e', code], 0)
  const packages = "await Promise.all([import('@observablehq/plot'), import('linkedom')])"
  const bundle = `await import(${JSON.stringify(`${BUILD}dist/lib/report/charting-library.js`)})`
  await node(packages)
  await node(bundle)
  const loads: Array<{bare: Measure; bundle: Measure; packages: Measure}> = []
  for (let round = 0; round < ROUNDS; round++) {
    loads.push({bare: await node(''), bundle: await node(bundle), packages: await node(packages)})
  }
  const extra = (key: 'bundle' | 'packages', of: 'cpuSeconds' | 'seconds') =>
    median(loads.map((load) => load[key][of] - load.bare[of])).toFixed(2)
  const large = figures.at(-1)!
  const small = figures[0]!
  const verdict = [
    `- time at 100k users: audit --html is ${large.ratio.toFixed(3)}× audit: ${large.ratio <= 1.1 ? '**met**' : '**not met**'} (target ≤ 1.10×).`,
    `- page size at 100k users: ${(large.bytes / 1024).toFixed(1)} KiB (${(small.bytes / 1024).toFixed(1)} KiB at 10k): ${large.bytes <= 1024 * 1024 ? '**met**' : '**not met**'} (target ≤ 1 MB and flat).`,
  ].join('\n')
  return {
    markdown: `Command: \`CKAN_MIGRATE_TEST_POSTGRES_URL=… npm run bench -- report\`. Per size, a fresh ${engine} database with the CKAN 2.9 schema is seeded (\`seedCkanSite\`), then, after one warm-up of each, five interleaved rounds of:

- reference: \`node bin/run.js audit --database-url "$URL" --json > /dev/null\` (compiled build, a child process under \`/usr/bin/time -v\`)
- measured: the same with \`--html readiness.html\` (the page's extra queries, the charting library's import, rendering and writing the page)

Times are medians; the ratio is the median of the five rounds' wall-time ratios; CLI CPU is the median user + system time of the ckan-migrate process alone (PostgreSQL's share not included), which a loaded machine distorts less; RSS is the largest peak of the --html runs.

| users | audit | audit --html | ratio (wall) | CLI CPU, audit → audit --html | page size | peak RSS (--html) | load avg (1 min) |
| --- | --- | --- | --- | --- | --- | --- | --- |
${rows.join('\n')}

Targets (issue 21): at 100,000 users, generating the page adds ≤ 10 % to the audit's time; the page is ≤ 1 MB and does not grow with the site (aggregates and samples of at most 10 names).

${verdict}

Loading the charting library alone (\`node -e "await import(…)"\` against a bare \`node -e ""\`, medians of five): from its packages (\`@observablehq/plot\` and \`linkedom\`, about a thousand files) +${extra('packages', 'cpuSeconds')} s CPU, +${extra('packages', 'seconds')} s wall; from the build's one minified bundle of the three (\`dist/lib/report/charting-library.js\`, what the CLI loads) +${extra('bundle', 'cpuSeconds')} s CPU, +${extra('bundle', 'seconds')} s wall.

Where the extra time goes: the page's figures are one more pass over active users (credential state and the newest activity, token use and, on 2.10+, \`last_active\`, grouped in PostgreSQL) and one over \`api_token\` (expiry), run only with \`--html\`; the charting library (one esbuild bundle of Observable Plot, d3 and linkedom, made by \`npm run build\`) is imported while the database works (a dynamic import started before the first query), so its load overlaps the queries. Rendering the four charts and the page takes tens of milliseconds. Node's compile cache (\`module.enableCompileCache()\`) was tried on top and not kept: it saved a few tens of milliseconds, and a code cache that another local user could prepare is not something a tool run as root should load. Profiled at 100,000 users on a quiet machine (\`node --cpu-prof bin/run.js audit --database-url … --json --html …\`, 10 ms bins): the bundle's load (about 50 ms) falls in the time the CLI waits for the census and costs no wall time; what the page adds to the wall time is its own query (\`EXPLAIN ANALYZE\`: 82 ms, a parallel scan of \`"user"\` joined to the per-user newest token use and activity), run after the census on the same connection so that it reads the same snapshot as the \`--json\` numbers, and drawing the four charts (about 70 ms, Plot's code compiled on first use and linkedom's DOM). That is about 0.15 s against a 10 % budget of about 50 ms of a 0.5 s audit: the target cannot be met while a charting library draws the charts (which the issue asks for), short of running the page's query on a second connection in an exported snapshot, which is the next step.`,
    title: 'The readiness page (`audit --html`)',
  }
}
