/**
 * One part of the concurrency benchmark, printed as JSON, without touching docs/benchmarks.md
 * (for iterating): `node --import tsx bench/support/concurrency-quick.ts sweep|auto|probe|faults [workers]`.
 */
import {autoOnly, continuity, exactlyOnce, sweep} from '../concurrency.bench.js'
import {withBuiltCli} from '../issue-tokens.bench.js'

const [which = 'sweep', workers = '4'] = process.argv.slice(2)
await withBuiltCli(async () => {
  const started = Date.now()
  const part = {auto: autoOnly, faults: exactlyOnce, probe: continuity, sweep}[which] ?? sweep
  const result = await part(Number(workers))
  console.log(JSON.stringify(result, (key, value: unknown) => (key === 'result' ? undefined : value), 1))
  console.log(`seconds: ${(Date.now() - started) / 1000}`)
})
