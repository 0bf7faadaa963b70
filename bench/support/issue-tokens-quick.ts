/**
 * One figure of the issue-tokens benchmark, printed, without touching docs/benchmarks.md (for
 * iterating): `node --import tsx bench/support/issue-tokens-quick.ts throughput|sequential|memory [users]`.
 * BENCH_ISSUE_NODE_ARGS passes node flags to the measured CLI (e.g. --cpu-prof --cpu-prof-dir=/tmp/prof).
 */
import {measureMemory, measureSequential, measureThroughput, withBuiltCli} from '../issue-tokens.bench.js'

const [which = 'throughput', size] = process.argv.slice(2)
await withBuiltCli(async () => {
  if (which === 'throughput') {
    const result = await measureThroughput(Number(size ?? 10_000))
    const ours = result.ours.tokens / result.ours.seconds
    console.log(
      `throughput: ${ours.toFixed(0)} tokens/s vs autocannon ${result.loadGenerator.perSecond.toFixed(0)} req/s (own figure ${result.loadGenerator.ownFigure.toFixed(0)}) = ${result.ratio.toFixed(2)}x; CPU ${result.cpuPerToken.toFixed(0)} µs/token; peak RSS ${(result.ours.maxRssBytes / 2 ** 20).toFixed(0)} MiB; at peak (MiB): ${JSON.stringify(result.ours.atPeak)}`,
    )
  } else if (which === 'sequential') {
    const result = await measureSequential(Number(size ?? 500))
    console.log(
      `sequential: ${result.ours.toFixed(0)} tokens/s vs loop ${result.loop.toFixed(0)} req/s = ${(result.ours / result.loop).toFixed(2)}x`,
    )
  } else {
    const result = await measureMemory(Number(size ?? 100_000))
    console.log(
      `memory: ${result.tokens} tokens at ${(result.tokens / result.seconds).toFixed(0)}/s; peak RSS ${(result.maxRssBytes / 2 ** 20).toFixed(0)} MiB; CPU ${(result.cpuMicros / result.tokens).toFixed(0)} µs/token (whole run); at peak (MiB): ${JSON.stringify(result.atPeak)}; RSS each second: ${result.rssPerSecond?.join(' ')}`,
    )
  }
})
