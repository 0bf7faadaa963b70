import {execFile} from 'node:child_process'
import {existsSync} from 'node:fs'
import {copyFile, mkdir, rm, symlink} from 'node:fs/promises'
import {fileURLToPath} from 'node:url'
import {loadavg} from 'node:os'
import {promisify} from 'node:util'
import pg from 'pg'

import {createCkanSchema} from '../src/lib/sandbox/ckan-schema.js'
import {seedCkanSite} from '../src/lib/sandbox/ckan-site-seeder.js'
import type {BenchResult} from './run.js'
import {benchDatabase} from './support/bench-database.js'

const run = promisify(execFile)
const ROOT = fileURLToPath(new URL('..', import.meta.url))
const BUILD = fileURLToPath(new URL('.out/audit-build/', import.meta.url))
const PSQL_COPY = String.raw`\copy (select id,name,apikey,state,sysadmin,email from "user") to '/dev/null'`

type Measure = {maxRssMb: number; seconds: number}

/**
 * Issue 4: with one million users, `audit` takes at most 1.5x the time of psql copying the user
 * columns it reads, and its peak RSS stays under 150 MB and flat between 100k and 1M users. The
 * CLI runs as a child process from a compiled build (bin/run.js, as installed), under
 * /usr/bin/time -v for its peak RSS. Each time is the best of two runs after a warm-up; each RSS the larger of the two.
 */
export default async function auditBench(): Promise<BenchResult> {
  await buildCli()
  const rows: string[] = []
  const figures: Array<{copy: Measure; csv: Measure; plain: Measure; users: number}> = []
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
      const copy = await best(psql)
      const plain = await best(() => audit([]))
      const csv = await best(() => audit(['--csv', `${BUILD}audit-users.csv`]))
      const ratio = (measured: Measure) => (measured.seconds / copy.seconds).toFixed(2)
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
  const ratio = large.plain.seconds / large.copy.seconds
  const growth = large.plain.maxRssMb - small.plain.maxRssMb
  const verdict = [
    `- time at 1M users: ${ratio.toFixed(2)}× the psql copy: ${ratio <= 1.5 ? '**met**' : '**not met**'} (target ≤ 1.5×).`,
    `- peak RSS: ${small.plain.maxRssMb} MB at 100k, ${large.plain.maxRssMb} MB at 1M (${growth >= 0 ? '+' : ''}${growth} MB): ${large.plain.maxRssMb < 150 && Math.abs(growth) <= 10 ? '**met**' : '**not met**'} (target < 150 MB and flat).`,
  ].join('\n')
  return {
    markdown: `Commands: \`CKAN_MIGRATE_TEST_POSTGRES_URL=… npm run bench -- audit\`. Per size, a fresh ${engine} database with the CKAN 2.9 schema is seeded (\`seedCkanSite\`, about 40 % of users with a legacy key), then timed, each the best of two runs after one warm-up (peak RSS: the larger of the two):

- reference: \`psql "$URL" -X -q -c "${PSQL_COPY.replaceAll('"', '\\"')}"\`
- audit: \`node bin/run.js audit --database-url "$URL" --json > /dev/null\` (compiled build, a child process under \`/usr/bin/time -v\`)
- audit --csv: the same with \`--csv audit-users.csv\` (one row per user)

| users | psql \\copy | audit (× psql) | audit --csv (× psql) | audit peak RSS | audit --csv peak RSS | load avg (1 min) |
| --- | --- | --- | --- | --- | --- | --- |
${rows.join('\n')}

Targets (issue 4): at one million users, audit ≤ 1.5× the psql copy; peak RSS < 150 MB and flat between 100k and 1M users.

${verdict}

Where the time goes (one read-only transaction, \`jit = off\`, 2 parallel workers): one parallel pass over \`"user"\` counted per combination of flags (token membership looked up only for key holders; a LIKE/NOT LIKE/negated-class UUID test instead of a regex over the whole key); token counts from \`api_token\` alone, grouped by holder; one statement that sorts 64-bit hashes (\`hashtextextended\`, seeds 0 and 1) of the keys and of active emails to find duplicates (a sort of hashes instead of a hash table of a million one-member groups; a group whose second hash differs is recounted exactly by value), as a parallel plan (parallel costs set to 0 for that statement only: the workers scan, hash and sort their share, the leader merges and groups; about 0.2 s less at 1M users than the serial plan, whose email sort also spilled to disk at 64 MB), sampling only duplicates that exist; then \`LIMIT 10\` samples for the findings that exist. Node start-up and oclif's loading are about 0.15 s now that the HTTP client (\`--ckan-url\`) and the CSV writer (\`--csv\`) are imported only when used.

Why the 1.5× target is not met here. psql's copy is one serial pass that formats six columns. The audit must read and classify every row too, and then find duplicates, which needs every key and every active email in one sorted stream. Measured in isolation on the 1M-user database (psql \`\\timing\`, medians of 5 to 7 interleaved runs; this VM's speed drifts by up to 1.6× within an hour, so compare within a line, not across lines): a parallel \`count(*)\` 0.06 s; grouping by \`state\` (column 12, so every row is deformed that far) 0.14 s; adding the key, UUID, email and token flags 0.35–0.44 s; the key duplicates 0.16–0.26 s and the active-email duplicates 0.27–0.45 s, about half of each being the leader's serial merge. Tried and measured no better: one statement with grouping sets (1.0–1.5 s: no partial aggregation, so serial), one sorted stream of both kinds through \`unnest\` (+25 %), parallel hash semi-joins on the values or on their hashes (+80 %), a narrow \`MATERIALIZED\` CTE scanned three times (1.6–2.0 s, serial), JIT without optimisation (+5–10 %), one worker instead of two (±5 %), a compact \`COPY\` of flags and hashes to deduplicate in the client (slower than the reference copy itself: COPY runs serially; and client memory would grow with the site), and the three statements on three connections sharing one exported snapshot (−7 %, not worth three connections to a production database). The audit's parallel plans have two cores here while the copy is serial, so on a database server with more cores the ratio falls; on this machine the floor of exact, in-database counting is about 1.8–2×.

\`--csv\` is one \`COPY … TO STDOUT WITH (FORMAT csv)\` written straight to the file: PostgreSQL computes each key's fingerprint with \`sha256()\` and neutralises formula-looking cells, so memory stays flat and no key leaves the database (it replaced a cursor that turned every row into a JavaScript object and hashed the key in Node: 7.25 s and 264 MB at 1M users).`,
    title: 'Auditing a CKAN site (`audit`)',
  }
}

/** Compiles src/ into bench/.out/audit-build, laid out like an installed package. */
async function buildCli(): Promise<void> {
  await rm(BUILD, {force: true, recursive: true})
  await mkdir(`${BUILD}bin`, {recursive: true})
  // Other commands may be mid-edit and fail to type-check; tsc still emits, and audit is all we run.
  await run(process.execPath, [
    `${ROOT}node_modules/typescript/bin/tsc`,
    '-p',
    `${ROOT}tsconfig.json`,
    '--outDir',
    `${BUILD}dist`,
  ]).catch((error: unknown) => {
    if (!existsSync(`${BUILD}dist/commands/audit.js`)) throw error
  })
  await copyFile(`${ROOT}package.json`, `${BUILD}package.json`)
  await copyFile(`${ROOT}bin/run.js`, `${BUILD}bin/run.js`)
  await symlink(`${ROOT}node_modules`, `${BUILD}node_modules`)
  await symlink(`${ROOT}schema`, `${BUILD}schema`)
  // As installed: oclif reads the manifest and imports only the command being run.
  await run(process.execPath, [`${ROOT}node_modules/oclif/bin/run.js`, 'manifest', BUILD], {cwd: BUILD})
}

async function best(fn: () => Promise<Measure>): Promise<Measure> {
  const runs = [await fn(), await fn()]
  return {maxRssMb: Math.max(...runs.map((r) => r.maxRssMb)), seconds: Math.min(...runs.map((r) => r.seconds))}
}

/** Runs a command under /usr/bin/time -v; returns wall time and peak RSS (MB). */
async function measure(command: string, args: string[], expectedExit: number): Promise<Measure> {
  const started = performance.now()
  const result = await run('/usr/bin/time', ['-v', command, ...args], {maxBuffer: 64 * 1024 * 1024}).then(
    (output) => ({...output, code: 0}),
    (error: {code?: number; stderr: string; stdout: string}) => ({
      code: error.code ?? -1,
      stderr: error.stderr,
      stdout: error.stdout,
    }),
  )
  const seconds = (performance.now() - started) / 1000
  if (result.code !== expectedExit)
    throw new Error(`${command} exited ${result.code}, expected ${expectedExit}:\n${result.stderr.slice(0, 2000)}`)
  const rss = /Maximum resident set size \(kbytes\): (\d+)/.exec(result.stderr)
  return {maxRssMb: rss ? Math.round(Number(rss[1]) / 1024) : Number.NaN, seconds}
}
