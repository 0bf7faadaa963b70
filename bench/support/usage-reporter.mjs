/**
 * Preloaded into a benchmarked child process (`node --import ./bench/support/usage-reporter.mjs …`):
 * on exit, writes the process's own CPU time and peak RSS to $CKAN_MIGRATE_USAGE_FILE.
 */
import {writeFileSync} from 'node:fs'

const target = process.env.CKAN_MIGRATE_USAGE_FILE
if (target) {
  process.on('exit', () => {
    const cpu = process.cpuUsage()
    // resourceUsage().maxRSS is in KiB.
    writeFileSync(target, JSON.stringify({cpuMicros: cpu.user + cpu.system, maxRssBytes: process.resourceUsage().maxRSS * 1024}))
  })
}
