/**
 * Preloaded into a benchmarked child process (`node --import ./bench/support/usage-reporter.mjs …`):
 * on exit, writes the process's own CPU time and peak RSS to $CKAN_MIGRATE_USAGE_FILE, with the
 * breakdown of process.memoryUsage() sampled (every 50 ms) when RSS was highest.
 */
import {readFileSync, writeFileSync} from 'node:fs'
import {getHeapSpaceStatistics, writeHeapSnapshot} from 'node:v8'

const target = process.env.CKAN_MIGRATE_USAGE_FILE
if (target) {
  let peak = process.memoryUsage()
  let spaces = {}
  const started = Date.now()
  const timeline = []
  let ticks = 0
  // Debugging aid: CKAN_MIGRATE_HEAP_SNAPSHOT_AT_MS=N writes a heap snapshot N ms after start (into the cwd).
  const snapshotAt = Number(process.env.CKAN_MIGRATE_HEAP_SNAPSHOT_AT_MS ?? 0)
  if (snapshotAt > 0) setTimeout(() => writeHeapSnapshot(), snapshotAt).unref()
  const sampler = setInterval(() => {
    const now = process.memoryUsage()
    if (++ticks % 20 === 0) timeline.push(Math.round(now.rss / 2 ** 20))
    if (now.rss > peak.rss) {
      peak = now
      spaces = Object.fromEntries(
        getHeapSpaceStatistics()
          .filter((space) => space.space_size >= 2 ** 20)
          .map((space) => [space.space_name, Math.round(space.space_size / 2 ** 20)]),
      )
      spaces.atMs = Date.now() - started
      if (process.env.CKAN_MIGRATE_USAGE_SMAPS) spaces.smaps = smaps()
    }
  }, 50)
  sampler.unref()
  process.on('exit', () => {
    const cpu = process.cpuUsage()
    const mib = (bytes) => Math.round(bytes / 2 ** 20)
    // resourceUsage().maxRSS is in KiB.
    writeFileSync(
      target,
      JSON.stringify({
        atPeak: {
          arrayBuffers: mib(peak.arrayBuffers),
          external: mib(peak.external),
          heapTotal: mib(peak.heapTotal),
          heapUsed: mib(peak.heapUsed),
          rss: mib(peak.rss),
          ...spaces,
        },
        cpuMicros: cpu.user + cpu.system,
        rssPerSecond: timeline,
        maxRssBytes: process.resourceUsage().maxRSS * 1024,
      }),
    )
  })
}

/** Debugging aid (CKAN_MIGRATE_USAGE_SMAPS=1): RSS in MiB by mapping kind, biggest first. */
function smaps() {
  const totals = {}
  let current = 'anon'
  for (const line of readFileSync('/proc/self/smaps', 'utf8').split('\n')) {
    const header = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line)
    if (header) {
      const path = header[1] || 'anon'
      current =
        path.includes('node') && !path.includes('node_modules') ? 'node binary' : path.startsWith('/') ? 'files' : path
    } else if (line.startsWith('Rss:')) {
      totals[current] = (totals[current] ?? 0) + Number(line.split(/\s+/)[1]) / 1024
    }
  }
  return Object.fromEntries(
    Object.entries(totals)
      .filter(([, mib]) => mib >= 1)
      .sort((a, b) => b[1] - a[1])
      .map(([key, mib]) => [key, Math.round(mib)]),
  )
}
