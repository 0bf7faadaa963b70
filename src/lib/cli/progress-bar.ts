import {Presets, SingleBar} from 'cli-progress'

export type ProgressBar = {
  increment(delta?: number, payload?: Record<string, number | string>): void
  stop(): void
}

export type ProgressBarOptions = {
  /** false under --json: nothing at all is drawn. */
  enabled: boolean
  label: string
  /** Show the concurrency limit in force (increment's `limit` payload). */
  showLimit?: boolean
  total: number
  /** Unit shown in plain lines, e.g. "users". */
  unit?: string
}

const SILENT: ProgressBar = {increment() {}, stop() {}}

/** True when progress may be shown: stderr is a terminal, not CI. */
export function isInteractive(): boolean {
  return Boolean(process.stderr.isTTY) && !process.env.CI
}

/**
 * A progress bar on stderr when it is a terminal; a plain line every 10 seconds when stderr is
 * redirected to a file or a pipe; nothing in CI or under --json. stdout stays for the result.
 */
export function startProgressBar(options: ProgressBarOptions): ProgressBar {
  if (!options.enabled || process.env.CI || options.total <= 0) return SILENT
  if (!process.stderr.isTTY) return startPlainProgress(options)
  // cli-progress's own {placeholders}, not template literals.
  const bar = new SingleBar(
    {
      etaBuffer: 200,
      format: `${options.label} {bar} {value}/{total} | {rate}/s${options.showLimit ? ' | limit {limit}' : ''} | ETA {eta_formatted} | failed {failed}`,
      hideCursor: true,
      stream: process.stderr,
    },
    Presets.shades_classic,
  )
  const started = Date.now()
  let value = 0
  let failed = 0
  let limit = '1'
  bar.start(options.total, 0, {failed: 0, limit, rate: '0'})
  return {
    increment(delta = 1, payload = {}) {
      value += delta
      if (typeof payload.failed === 'number') failed = payload.failed
      if (payload.limit !== undefined) limit = String(payload.limit)
      const seconds = Math.max((Date.now() - started) / 1000, 0.001)
      bar.increment(delta, {failed, limit, rate: (value / seconds).toFixed(0)})
    },
    stop() {
      bar.stop()
    },
  }
}

function startPlainProgress(options: ProgressBarOptions): ProgressBar {
  const started = Date.now()
  let value = 0
  let failed = 0
  let limit = ''
  const line = () => {
    const seconds = Math.max((Date.now() - started) / 1000, 0.001)
    const limitText = options.showLimit && limit ? `, limit ${limit}` : ''
    process.stderr.write(
      `${options.label}: ${value}/${options.total} ${options.unit ?? ''} (${(value / seconds).toFixed(0)}/s${limitText}, failed ${failed})\n`.replace(
        '  ',
        ' ',
      ),
    )
  }
  const timer = setInterval(line, 10_000)
  timer.unref()
  return {
    increment(delta = 1, payload = {}) {
      value += delta
      if (typeof payload.failed === 'number') failed = payload.failed
      if (payload.limit !== undefined) limit = String(payload.limit)
    },
    stop() {
      clearInterval(timer)
      if (Date.now() - started >= 10_000) line()
    },
  }
}
