import type {ConcurrencyReport} from '../site/adaptive-limit.js'

/** One line for a bulk command's summary: the limit it settled on and the answer times it saw. */
export function describeConcurrency(report: ConcurrencyReport): string {
  const limit =
    report.mode === 'auto'
      ? `Concurrency auto: settled at ${report.settled} (highest ${report.highest}, at most ${report.max}, latency budget ${report.latencyBudget}×)`
      : `Concurrency ${report.settled} (fixed)`
  const {idle, underLoad} = report.latencyMs
  const times = [
    idle ? `${idle.p50}/${idle.p95} ms idle` : undefined,
    underLoad ? `${underLoad.p50}/${underLoad.p95} ms under load` : undefined,
  ].filter(Boolean)
  const answers = report.action && times.length > 0 ? `; ${report.action} p50/p95 ${times.join(', ')}` : ''
  const overload = report.overloadSignals > 0 ? `; ${report.overloadSignals} answers said the site was overloaded` : ''
  return `${limit}${answers}${overload}.`
}
