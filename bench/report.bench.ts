import {mkdtemp, rm, stat} from 'node:fs/promises'
import {loadavg, tmpdir} from 'node:os'
import {join} from 'node:path'
import pg from 'pg'

import {createCkanSchema} from '../src/sandbox/ckan-schema.js'
import {seedCkanSite} from '../src/sandbox/ckan-site-seeder.js'
import {BUILD, buildCli, type Measure, measure, median} from './audit.bench.js'
import type {BenchResult} from './run.js'
import {benchDatabase} from './support/bench-database.js'

const ROUNDS = 21

/**
 * Issue 21: writing the readiness page (`audit --html FILE`) adds at most 10 % to the audit's
 * time at 100,000 users, and the page stays at most 1 MB, flat as the site grows. The compiled
 * CLI runs as a child process (as installed); after a warm-up, ROUNDS interleaved rounds of
 * `audit --json`, `audit --json --html FILE`, and the latter on a first run (an empty compile
 * cache: CKAN_MIGRATE_CACHE_DIR a new folder); the ratio is the median of the rounds' ratios.
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
      const audit = (extra: string[], env?: NodeJS.ProcessEnv) =>
        measure(
          process.execPath,
          [`${BUILD}bin/run.js`, 'audit', '--database-url', database.url, '--json', ...extra],
          10,
          env,
        )
      const firstRun = async () => {
        const cache = await mkdtemp(join(tmpdir(), 'ckan-migrate-bench-cache-'))
        try {
          return await audit(['--html', page], {...process.env, CKAN_MIGRATE_CACHE_DIR: cache})
        } finally {
          await rm(cache, {force: true, recursive: true})
        }
      }
      await audit([])
      await audit(['--html', page])
      const rounds: Array<{first: Measure; html: Measure; plain: Measure}> = []
      for (let round = 0; round < ROUNDS; round++) {
        rounds.push({plain: await audit([]), html: await audit(['--html', page]), first: await firstRun()})
      }
      const plain = median(rounds.map((round) => round.plain.seconds))
      const html = median(rounds.map((round) => round.html.seconds))
      const ratio = median(rounds.map((round) => round.html.seconds / round.plain.seconds))
      const firstRatio = median(rounds.map((round) => round.first.seconds / round.plain.seconds))
      const cpuPlain = median(rounds.map((round) => round.plain.cpuSeconds))
      const cpuHtml = median(rounds.map((round) => round.html.cpuSeconds))
      const rss = Math.max(...rounds.map((round) => round.html.maxRssMb))
      const {size: bytes} = await stat(page)
      figures.push({bytes, ratio, users})
      rows.push(
        `| ${users.toLocaleString('en')} | ${plain.toFixed(3)} s | ${html.toFixed(3)} s | ${ratio.toFixed(3)}× | ${firstRatio.toFixed(3)}× | ${cpuPlain.toFixed(2)} s → ${cpuHtml.toFixed(2)} s (+${(cpuHtml - cpuPlain).toFixed(2)} s) | ${(bytes / 1024).toFixed(1)} KiB | ${rss} MB | ${loadavg()[0]!.toFixed(1)} |`,
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
    markdown: `Command: \`CKAN_MIGRATE_TEST_POSTGRES_URL=… npm run bench -- report\`. Per size, a fresh ${engine} database with the CKAN 2.9 schema is seeded (\`seedCkanSite\`), then, after one warm-up of each, ${ROUNDS} interleaved rounds of:

- reference: \`node bin/run.js audit --database-url "$URL" --json > /dev/null\` (compiled build, a child process under \`/usr/bin/time -v\`)
- measured: the same with \`--html readiness.html\` (the census's extra figures, the chart thread, drawing and writing the page)
- first run: the measured command with an empty compile cache (\`CKAN_MIGRATE_CACHE_DIR\` a new folder), as on a machine's first \`audit --html\`

Times are medians; the ratios are the medians of the ${ROUNDS} rounds' wall-time ratios; CLI CPU is the median user + system time of the ckan-migrate process alone (PostgreSQL's share not included), which a loaded machine distorts less; RSS is the largest peak of the --html runs.

| users | audit | audit --html | ratio (wall) | ratio, first run | CLI CPU, audit → audit --html | page size | peak RSS (--html) | load avg (1 min) |
| --- | --- | --- | --- | --- | --- | --- | --- | --- |
${rows.join('\n')}

Targets (issue 21): at 100,000 users, generating the page adds ≤ 10 % to the audit's time; the page is ≤ 1 MB and does not grow with the site (aggregates and samples of at most 10 names).

${verdict}

Loading the charting library alone (\`node -e "await import(…)"\` against a bare \`node -e ""\`, medians of five): from its packages (\`@observablehq/plot\` and \`linkedom\`, about a thousand files) +${extra('packages', 'cpuSeconds')} s CPU, +${extra('packages', 'seconds')} s wall; from the build's one minified bundle of the three (\`dist/lib/report/charting-library.js\`, what the CLI loads) +${extra('bundle', 'cpuSeconds')} s CPU, +${extra('bundle', 'seconds')} s wall.

How the page costs this little (docs/commands/audit.md, "Speed"; measured 2026-12-06 at 100,000 users with per-thread CPU from /proc, \`EXPLAIN ANALYZE\` and PostgreSQL's \`log_min_duration_statement\`):

- **No query of its own.** The census, the audit's one parallel pass over \`"user"\`, also sorts each user by token holding and each key holder by their latest sign of life, with membership tests against sets of user ids built once (uncorrelated hashed subplans, so the census keeps its Parallel Append), and counts tokens by expiry in a branch of its own. Sets that can hold nothing (no activity rows, no token ever used) are left out. The census's flags branch costs about 12 ms more CPU than the plain one (52 → 64 ms alone, \`EXPLAIN ANALYZE\` with timing off, best of 21), the whole census about 4 ms more wall time (72 → 76 ms); the separate figures query it replaces cost about 80 ms of PostgreSQL CPU beside the census. The figures are checked against plain SQL in test/commands/audit-breakdown.test.ts.
- **The charts on a thread of their own, started while the CLI loads.** bin/run.js starts the drawing thread when the command line holds \`--html\`, before oclif is imported: the thread loads the charting library and draws one sample set of figures on the core the CLI's start leaves idle, then waits; the real charts are drawn (about 10 ms) as soon as the census statement is in, while the duplicate checks, the samples and the rest of the audit run. Started with the command instead, the thread's load competed with the census (the census took 228 ms instead of 140).
- **A smaller bundle.** The bundle holds only the Plot marks the charts use, and leaves out linkedom's HTML parser and CSS object model (the documents are built by Plot's createElement calls): 833 KB → 346 KB.
- **A compile cache.** The thread keeps V8's compiled code of the library in the user's private cache folder (0700, checked before use; docs/security-model.md): about 20 ms less CPU for the thread from the second run on ("first run" above is without it).

How much the ratio moves on this machine: on 2026-12-06 the same build gave, besides the run in the table, 1.133× (11 rounds), 1.180× (11) and 1.157× (21) in three earlier runs of this benchmark, and 1.08× to 1.16× in ten interleaved runs of 15 rounds by hand (\`audit --json\` against \`audit --json --html\` on the same 100,000-user database); in the same runs the build before these changes gave 1.33× to 1.47×. The host's load moves it by more than the 10 % target leaves, so the target is not shown met.

What the page still costs: the thread (about 100 ms of CPU, a third of it Node's start of a thread, on the core the CLI's start leaves idle; even so the CLI's own start, oclif and the command's modules, takes about 20 ms longer beside it on this 2-core machine, as a busy loop on the other core slows it too), the census's extra 12 ms of CPU, writing the page (about 6 ms, beside closing the connection). Before these changes it was 1.36× (2026-12-04) and 1.45× (2026-12-03), the same command.`,
    title: 'The readiness page (`audit --html`)',
  }
}
