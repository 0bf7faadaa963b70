import {mkdtemp, rm} from 'node:fs/promises'
import {loadavg, tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'

import type {RehearsalResult} from '../src/sandbox/rehearse-migration.js'
import type {BenchResult} from './run.js'
import {buildCli, measure} from './support/cli-child.js'

const BUILD = fileURLToPath(new URL('.out/sandbox-build/', import.meta.url))
/** Site sizes, smallest first; `SANDBOX_BENCH_USERS=2000,20000` for a quicker run. */
const SIZES = (process.env.SANDBOX_BENCH_USERS ?? '20000,100000').split(',').map(Number)

type Run = {
  engine: 'PGlite' | 'PostgreSQL'
  maxRssMb: number
  ok: boolean
  result: RehearsalResult | undefined
  seconds: number
  users: number
}

/**
 * Issue 17: `sandbox --run` at a real site's size. For each size, the compiled CLI runs the whole
 * rehearsal as a child process under /usr/bin/time -v on PGlite and then, with
 * CKAN_MIGRATE_TEST_POSTGRES_URL set, on that PostgreSQL server (`--database-url`), one after the
 * other in the same command. Each step's time comes from the command's own --json result.
 */
export default async function sandboxBench(): Promise<BenchResult> {
  await buildCli(BUILD, 'sandbox')
  const server = process.env.CKAN_MIGRATE_TEST_POSTGRES_URL
  const runs: Run[] = []
  for (const users of SIZES) {
    for (const engine of server ? (['PGlite', 'PostgreSQL'] as const) : (['PGlite'] as const)) {
      const dir = await mkdtemp(join(tmpdir(), 'ckan-migrate-sandbox-bench-'))
      try {
        const args = [`${BUILD}bin/run.js`, 'sandbox', '--run', '--users', String(users), '--dir', dir, '--json']
        if (engine === 'PostgreSQL') args.push('--database-url', server!)
        const measured = await measure(process.execPath, args, null).catch((error: Error) => {
          console.error(`bench sandbox: ${engine} ${users}: ${error.message.split('\n')[0]}`)
          return undefined
        })
        const result = measured
          ? (JSON.parse(measured.stdout) as {result?: RehearsalResult}).result
          : (undefined as RehearsalResult | undefined)
        runs.push({
          engine,
          maxRssMb: measured?.maxRssMb ?? Number.NaN,
          ok: Boolean(result?.ok),
          result,
          seconds: measured?.seconds ?? Number.NaN,
          users,
        })
        console.error(
          `bench sandbox: ${engine} ${users} users: ${runs.at(-1)!.seconds.toFixed(1)} s, ${runs.at(-1)!.maxRssMb} MB, ok ${runs.at(-1)!.ok} (load ${loadavg()[0]!.toFixed(1)})`,
        )
      } finally {
        await rm(dir, {force: true, recursive: true})
      }
    }
  }
  const label = (run: Run) => `${run.engine}, ${run.users.toLocaleString('en')} users`
  const names = [...new Set(runs.flatMap((run) => run.result?.steps.map((step) => step.name) ?? []))]
  const seconds = (run: Run, name: string) => {
    const step = run.result?.steps.find((entry) => entry.name === name)
    return step ? `${(step.durationMs / 1000).toFixed(1)} s${step.ok ? '' : ' ✗'}` : '–'
  }
  const rate = (run: Run, name: string) => {
    const step = run.result?.steps.find((entry) => entry.name === name)
    const count = step ? Number(/^(\d+)/.exec(step.detail)?.[1]) : Number.NaN
    return step && count > 0 ? count / (step.durationMs / 1000) : Number.NaN
  }
  const header = `| step | ${runs.map(label).join(' | ')} |\n| --- | ${runs.map(() => '---').join(' | ')} |`
  const stepRows = names.map((name) => `| ${name} | ${runs.map((run) => seconds(run, name)).join(' | ')} |`)
  const summaryRows = [
    `| **whole run (wall clock)** | ${runs.map((run) => `**${run.seconds.toFixed(1)} s**${run.ok ? '' : ' ✗'}`).join(' | ')} |`,
    `| peak RSS | ${runs.map((run) => `${run.maxRssMb} MB`).join(' | ')} |`,
    `| issue-tokens (api_token_create/s) | ${runs.map((run) => rate(run, 'issue-tokens').toFixed(0)).join(' | ')} |`,
    `| verify (tokens/s) | ${runs.map((run) => rate(run, 'verify').toFixed(0)).join(' | ')} |`,
    `| verify ÷ issue-tokens speed | ${runs.map((run) => (rate(run, 'verify') / rate(run, 'issue-tokens')).toFixed(2)).join(' | ')} |`,
    `| continuity probe calls, failures | ${runs.map((run) => (run.result ? `${run.result.continuity.calls}, ${run.result.continuity.failures}` : '–')).join(' | ')} |`,
  ]
  const pglite = runs.filter((run) => run.engine === 'PGlite')
  const largest = pglite.at(-1)
  const verdict = largest
    ? [
        `- PGlite at ${largest.users.toLocaleString('en')} users: ${largest.seconds.toFixed(0)} s (target ≤ 180 s: **${largest.ok && largest.seconds <= 180 ? 'met' : 'not met'}**), peak RSS ${largest.maxRssMb} MB (target ≤ 1,536 MB: **${largest.maxRssMb <= 1536 ? 'met' : 'not met'}**).`,
        `- verify at least as fast as issue-tokens: ${runs.map((run) => `${label(run)} ${(rate(run, 'verify') / rate(run, 'issue-tokens')).toFixed(2)}×`).join('; ')}.`,
        `- memory as the site grows (PGlite): ${pglite.map((run) => `${run.maxRssMb} MB at ${run.users.toLocaleString('en')}`).join(', ')}.`,
      ].join('\n')
    : ''
  return {
    markdown: `Command: \`source .ci/start-postgres.sh && npm run bench -- sandbox\` (sizes from \`SANDBOX_BENCH_USERS\`, default \`20000,100000\`). For each size, the compiled CLI runs \`node bin/run.js sandbox --run --users N --dir <tmp> --json\` as a child process under \`/usr/bin/time -v\`, first on PGlite, then with \`--database-url "$CKAN_MIGRATE_TEST_POSTGRES_URL"\` (real PostgreSQL on the same machine), one after the other. Step times are the command's own (\`.result.steps[].durationMs\`); the whole run and the peak RSS are the child's. Load average (1 min) at the end: ${loadavg()[0]!.toFixed(1)} on 2 cores shared with other work, so absolute times are noisy: compare the columns.

${header}
${stepRows.join('\n')}
${summaryRows.join('\n')}

Targets (issue 17): the whole run on PGlite at 100,000 users ≤ 3 minutes with peak RSS ≤ 1.5 GB; verify at least as fast as issue-tokens; memory flat as the site grows.

${verdict}`,
    title: 'The rehearsal at a site’s size (`sandbox --run`)',
  }
}
