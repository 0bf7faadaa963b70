import {rm} from 'node:fs/promises'
import {fileURLToPath} from 'node:url'
import {loadavg} from 'node:os'
import pg from 'pg'

import {buildCli as buildInstalledCli, type Measure, measure} from './support/cli-child.js'
import {createCkanSchema} from '../src/sandbox/ckan-schema.js'
import {seedCkanSite} from '../src/sandbox/ckan-site-seeder.js'
import type {BenchResult} from './run.js'
import {benchDatabase} from './support/bench-database.js'

export {type Measure, measure}

export const BUILD = fileURLToPath(new URL('.out/audit-build/', import.meta.url))
const PSQL_COPY = String.raw`\copy (select id,name,apikey,state,sysadmin,email from "user") to '/dev/null'`

/** Medians over the rounds (time, and each round's ratio to that round's psql copy); the largest RSS. */
type Summary = Omit<Measure, 'cpuSeconds' | 'stdout'> & {ratio: number}

const ROUNDS = 5

/**
 * Issue 4: with one million users, `audit` takes at most 1.5x the time of psql copying the user
 * columns it reads, and its peak RSS stays under 150 MB and flat between 100k and 1M users. The
 * CLI runs as a child process from a compiled build (bin/run.js, as installed), under
 * /usr/bin/time -v for its peak RSS. After a warm-up, ROUNDS interleaved rounds (psql, audit, audit
 * --csv); times and ratios are medians over the rounds, RSS the largest.
 */
export default async function auditBench(): Promise<BenchResult> {
  await buildCli()
  const rows: string[] = []
  const figures: Array<{copy: Summary; csv: Summary; plain: Summary; users: number}> = []
  let engine = ''
  for (const users of [100_000, 1_000_000]) {
    const database = await benchDatabase()
    engine = database.engine
    try {
      const client = new pg.Client({connectionString: database.url})
      await client.connect()
      await createCkanSchema(client, '2.9', {harvest: true})
      await seedCkanSite(client, {harvestSources: true, seed: 'bench', siteId: 'default', users, version: '2.9'})
      await client.query('VACUUM ANALYZE')
      await client.end()
      const psql = () => measure('psql', [database.url, '-X', '-q', '-c', PSQL_COPY], 0)
      const audit = (extra: string[]) =>
        measure(
          process.execPath,
          [`${BUILD}bin/run.js`, 'audit', '--database-url', database.url, '--json', ...extra],
          10,
        )
      await psql()
      await audit([])
      // Interleaved, so the VM's drifting speed (up to 1.6x within an hour) hits all three alike.
      const rounds: Array<{copy: Measure; csv: Measure; plain: Measure}> = []
      for (let round = 0; round < ROUNDS; round++) {
        rounds.push({
          copy: await psql(),
          plain: await audit([]),
          csv: await audit(['--csv', `${BUILD}audit-users.csv`]),
        })
      }
      const summarise = (kind: 'copy' | 'csv' | 'plain'): Summary => ({
        maxRssMb: Math.max(...rounds.map((round) => round[kind].maxRssMb)),
        ratio: median(rounds.map((round) => round[kind].seconds / round.copy.seconds)),
        seconds: median(rounds.map((round) => round[kind].seconds)),
      })
      const copy = summarise('copy')
      const plain = summarise('plain')
      const csv = summarise('csv')
      const ratio = (measured: Summary) => measured.ratio.toFixed(2)
      rows.push(
        `| ${users.toLocaleString('en')} | ${copy.seconds.toFixed(2)} s | ${plain.seconds.toFixed(2)} s (${ratio(plain)}×) | ${csv.seconds.toFixed(2)} s (${ratio(csv)}×) | ${plain.maxRssMb} MB | ${csv.maxRssMb} MB | ${loadavg()[0]!.toFixed(1)} |`,
      )
      figures.push({copy, csv, plain, users})
      console.error(`bench audit: ${rows.at(-1)}`)
    } finally {
      await database.release()
    }
  }
  await rm(`${BUILD}audit-users.csv`, {force: true})
  const [small, large] = figures as [(typeof figures)[0], (typeof figures)[0]]
  const ratio = large.plain.ratio
  const growth = large.plain.maxRssMb - small.plain.maxRssMb
  const verdict = [
    `- time at 1M users: ${ratio.toFixed(2)}× the psql copy: ${ratio <= 1.5 ? '**met**' : '**not met**'} (target ≤ 1.5×).`,
    `- peak RSS: ${small.plain.maxRssMb} MB at 100k, ${large.plain.maxRssMb} MB at 1M (${growth >= 0 ? '+' : ''}${growth} MB): ${large.plain.maxRssMb < 150 && Math.abs(growth) <= 10 ? '**met**' : '**not met**'} (target < 150 MB and flat).`,
  ].join('\n')
  return {
    markdown: `Commands: \`CKAN_MIGRATE_TEST_POSTGRES_URL=… npm run bench -- audit\`. Per size, a fresh ${engine} database with the CKAN 2.9 schema is seeded (\`seedCkanSite\`, about 40 % of users with a legacy key), then timed in five interleaved rounds after one warm-up (psql, audit, audit --csv in turn; this VM's speed drifts by up to 1.6× within an hour). Times are medians; each ratio is the median of the five rounds' ratios to that round's psql copy; peak RSS is the largest of the five:

- reference: \`psql "$URL" -X -q -c "${PSQL_COPY.replaceAll('"', '\\"')}"\`
- audit: \`node bin/run.js audit --database-url "$URL" --json > /dev/null\` (compiled build, a child process under \`/usr/bin/time -v\`)
- audit --csv: the same with \`--csv audit-users.csv\` (one row per user)

| users | psql \\copy | audit (× psql) | audit --csv (× psql) | audit peak RSS | audit --csv peak RSS | load avg (1 min) |
| --- | --- | --- | --- | --- | --- | --- |
${rows.join('\n')}

Targets (issue 4): at one million users, audit ≤ 1.5× the psql copy; peak RSS < 150 MB and flat between 100k and 1M users.

${verdict}

Where the time goes (one read-only transaction, \`jit = off\`, 2 parallel workers; server times from \`log_min_duration_statement\` at 1M users, with the psql copy at 0.50 s): the census, one \`UNION ALL\` run as a Parallel Append, each branch whole in one process (0.63 s): flag counts (state, sysadmin, site user, email, key, UUID key, key holder with tokens: one integer per user, grouped), the 64-bit hashes (\`hashtextextended\`) more than one legacy key shares, the same for active emails, and token counts; then the exact check of the shared hashes by value, one ordinary parallel scan whose workers pass on only the matching rows (0.11 s); then \`LIMIT\` samples for the findings that exist, each limited to its count (0.02 s). Node start-up, oclif and the connection: about 0.16 s.

Why the 1.5× target is not met here. The census's four branches cost, run one after another on one core (psql \`\\timing\`, interleaved runs): flag counts 0.49–0.55 s (0.16 s of it the UUID test, 0.07 s the token membership), active-email hashes 0.38–0.50 s, key hashes 0.22–0.26 s, token counts 0.05 s: about 1.2 s of CPU, which two cores cannot run in less than 0.6 s, and the branches are already balanced (flags on one core, the rest on the other). psql's copy is one serial pass of 0.5–0.7 s. Measured and not kept: both duplicate kinds in one branch through \`unnest\` (one scan fewer, but one long branch: +15–20 %), three workers instead of two (no change), hash aggregation for the flag counts (no change), other UUID tests (\`ltrim\`, \`translate\`, an anchored regex: 3–6× slower than LIKE + NOT LIKE + a negated class), grouping values as text in the C collation instead of by hash (exact, but +45–70 % per branch), a second hash carried through the sorts (+25 %), a \`MATERIALIZED\` CTE of token holders for the samples (no gain), and dropping the exact check (−0.1 to −0.15 s, still about 1.6×; and without it two crafted email addresses that share a hash would show as a duplicate, a false blocker). Before this design (one parallel pass for the flags, then one statement whose workers sorted hashes that the leader merged) the same machine measured 2.4–2.5×; the earlier alternatives (grouping sets, parallel hash semi-joins, a compact \`COPY\` deduplicated in the client, three connections sharing a snapshot) are in this file's history. On a database server with more cores the census's branches and the exact check run side by side while the copy stays serial, so the ratio falls; on this 2-core machine the floor of exact, in-database counting is about 1.6–1.9×.

\`--csv\` is one \`COPY … TO STDOUT WITH (FORMAT csv)\` written straight to the file: PostgreSQL computes each key's fingerprint with \`sha256()\` and neutralises formula-looking cells, so memory stays flat and no key leaves the database (it replaced a cursor that turned every row into a JavaScript object and hashed the key in Node: 7.25 s and 264 MB at 1M users).`,
    title: 'Auditing a CKAN site (`audit`)',
  }
}

/** Compiles src/ into bench/.out/audit-build, laid out like an installed package (the one builder in support/cli-child.ts). */
export async function buildCli(): Promise<void> {
  await buildInstalledCli(BUILD, 'audit')
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
}
