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

Where the extra time goes (2026-12-04, profiled at 100,000 users on a quiet machine with \`node --cpu-prof\`, 0.5 ms samples, and PostgreSQL's \`log_min_duration_statement\`): on a server the page's figures are read on a second connection in the audit transaction's exported snapshot, beside the census (PostgreSQL: census 156 ms, the figures' pass over \`"user"\` 80 ms, concurrently), the charting library (one esbuild bundle of Observable Plot, d3 and linkedom) is imported once the census statement is on its way, and the charts are drawn as soon as their figures are in, while the census still runs; before these changes (1.45× on 2026-12-03, the same command) all three ran one after another after the census. What remains is CPU on a 2-core machine the census already fills (a leader and two parallel workers): the library's evaluation (about 60 ms with its garbage collection, measured alone above), the figures' query (80 ms), the drawing (about 35 ms) and the page (about 10 ms), about 0.18 s of CPU against a 10 % budget of 30 to 40 ms of wall time for an audit that itself takes 0.3 to 0.4 s. Loading the charting library alone costs more than the budget, so the target cannot be met while the page's charts are drawn by a charting library in the CLI's process (which the issue asks for). Node's compile cache was measured on the bundle (a warm cache: 60 → 40 ms to import, the rest is evaluation) and not kept: a code cache that another local user could prepare is not something a tool run as root should load.`,
    title: 'The readiness page (`audit --html`)',
  }
}
