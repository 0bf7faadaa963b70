/**
 * One part of the concurrency benchmark, printed as JSON, without touching docs/benchmarks.md
 * (for iterating): `node --import tsx bench/support/concurrency-quick.ts sweep|probe|faults [workers]`.
 */
import {continuity, exactlyOnce, sweep} from '../concurrency.bench.js'
import {withBuiltCli} from '../issue-tokens.bench.js'

const [which = 'sweep', workers = '4'] = process.argv.slice(2)
await withBuiltCli(async () => {
  const started = Date.now()
  const part = which === 'sweep' ? sweep : which === 'probe' ? continuity : exactlyOnce
  const result = await part(Number(workers))
  console.log(JSON.stringify(result, (key, value: unknown) => (key === 'result' ? undefined : value), 1))
  console.log(`seconds: ${(Date.now() - started) / 1000}`)
})
