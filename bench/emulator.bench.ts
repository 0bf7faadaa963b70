import {execFile} from 'node:child_process'
import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {promisify} from 'node:util'

import pg from 'pg'

import type {CkanVersion} from '../src/lib/site/ckan-version.js'
import {startSandboxSite} from '../src/sandbox/sandbox-site.js'
import type {BenchResult} from './run.js'

const run = promisify(execFile)
const AUTOCANNON = new URL('../node_modules/autocannon/autocannon.js', import.meta.url).pathname
const CONNECTIONS = 32
const SECONDS = 15

type Measured = {
  cpuMicros: number
  errors: number
  non2xx: number
  p50: number
  p99: number
  perSecond: number
  rows: number
  total: number
}

async function measure(version: CkanVersion, serverUrl: string | undefined): Promise<Measured> {
  const dir = await mkdtemp(join(tmpdir(), 'ckan-migrate-bench-'))
  const site = await startSandboxSite({
    dir,
    serverUrl,
    users: 2000,
    version,
  })
  try {
    const args = [
      AUTOCANNON,
      '--json',
      '-c',
      String(CONNECTIONS),
      '-d',
      String(SECONDS),
      '-m',
      'POST',
      '-H',
      `Authorization=${site.adminCredential.reveal()}`,
      '-H',
      'Content-Type=application/json',
      '-b',
      JSON.stringify({name: 'bench', user: 'user-1'}),
      `${site.ckanUrl}/api/3/action/api_token_create`,
    ]
    const cpu = process.cpuUsage()
    const {stdout} = await run(process.execPath, args, {maxBuffer: 64 * 1024 * 1024})
    const used = process.cpuUsage(cpu)
    const report = JSON.parse(stdout) as {
      errors: number
      latency: {p50: number; p99: number}
      non2xx: number
      requests: {average: number; total: number}
    }
    const client = new pg.Client({connectionString: site.databaseUrl})
    await client.connect()
    const rows = Number(
      (await client.query<{n: string}>(`SELECT count(*) AS n FROM api_token WHERE name = 'bench'`)).rows[0]!.n,
    )
    await client.end()
    return {
      cpuMicros: (used.user + used.system) / Math.max(1, report.requests.total),
      errors: report.errors,
      non2xx: report.non2xx,
      p50: report.latency.p50,
      p99: report.latency.p99,
      perSecond: report.requests.average,
      rows,
      total: report.requests.total,
    }
  } finally {
    await site.stop()
    await rm(dir, {force: true, recursive: true})
  }
}

/** Issue 3: at least 3,000 api_token_create per second at concurrency 32, against real PostgreSQL. */
export default async function emulatorBench(): Promise<BenchResult> {
  // PGlite always, and side by side the real PostgreSQL server when one is given.
  const server = process.env.CKAN_MIGRATE_TEST_POSTGRES_URL
  const engines = server ? (['postgres', 'pglite'] as const) : (['pglite'] as const)
  const lines: string[] = []
  for (const [engine, version] of engines.flatMap((name) =>
    (['2.10', '2.9'] as const).map((v) => [name, v] as const),
  )) {
    const result = await measure(version, engine === 'postgres' ? server : undefined)
    const credential = version === '2.9' ? 'legacy key' : 'API token'
    lines.push(
      `| ${version} | ${credential} | ${Math.round(result.perSecond).toLocaleString('en')}/s | ${result.total.toLocaleString('en')} | ${result.rows.toLocaleString('en')} | ${result.non2xx + result.errors} | ${result.p50} ms | ${result.p99} ms | ${Math.round(result.cpuMicros)} µs | ${engine} |`,
    )
  }
  return {
    markdown: `Command: \`source .ci/start-postgres.sh && npm run bench -- emulator\` (PGlite always; real PostgreSQL too when \`CKAN_MIGRATE_TEST_POSTGRES_URL\` is set, in the same command).
It starts a sandbox site (2,000 users) with \`startSandboxSite\` and runs autocannon in a child process against it:
\`node node_modules/autocannon/autocannon.js --json -c ${CONNECTIONS} -d ${SECONDS} -m POST -H Authorization=<admin credential> -H Content-Type=application/json -b '{"name": "bench", "user": "user-1"}' <ckanUrl>/api/3/action/api_token_create\`.
Every request authenticates the sysadmin (a token: verify + \`UPDATE api_token SET last_access\`; a 2.9 legacy key: a lookup of \`"user".apikey\`, indexed in the sandbox only: CKAN has no index on it), then finds the user and inserts the token in one statement, and signs the JWT.

| CKAN | credential | api_token_create | requests | rows created | non-2xx + errors | p50 | p99 | emulator CPU per request | engine |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
${lines.join('\n')}

Target (issue 3): at least 3,000 api_token_create per second at concurrency 32 against real PostgreSQL on this 2-core machine (the load generator shares the 2 cores). PGlite is one WASM session in the benchmark's own process: every statement of every request runs one after another on one core (docs/emulator.md, Performance).`,
    title: 'CKAN emulator throughput',
  }
}
