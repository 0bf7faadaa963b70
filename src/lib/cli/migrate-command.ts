import {writeSync} from 'node:fs'

import {Command, Errors} from '@oclif/core'

import {describeError, errorCodeName, EXIT_CODES, type ExitCode, MigrateError} from '../errors.js'
import type {Progress} from '../progress.js'
import {translateSystemError} from '../system-errors.js'
import {isInteractive, type ProgressBar, startProgressBar} from './progress-bar.js'

/** After SIGTERM, what the run gets to save what it has before the process ends (< the 2 s promised). */
const SIGTERM_GRACE_MS = 1500

/**
 * Ends the process at once with the interrupted exit code. Everything ckan-migrate writes is
 * safe to stop at any point (write-ahead journal, atomic renames, whole-line appends), as a
 * kill -9 is. Input files are never read in a way that can block (src/lib/fs/input-file.ts):
 * process.exit waits for the libuv thread pool, so a read stuck there would stall it.
 */
function hardExit(json: JsonFailure | undefined): never {
  // Under --json stdout still carries its one document (written synchronously: exit does not wait).
  try {
    if (json) writeSync(1, `${JSON.stringify(json)}\n`)
    else writeSync(2, 'Stopped: run the same command again to go on.\n')
  } catch {
    // A closed or full pipe: the exit code still says it.
  }
  process.exit(EXIT_CODES.interrupted)
}

export type JsonSuccess<Result> = {result: Result; status: number; warnings: string[]}
export type JsonFailure = {
  error: {code: string; message: string; suggestion?: string}
  status: number
  warnings: string[]
}

/**
 * The base of every ckan-migrate command: `--json` with one envelope, domain errors mapped to
 * documented exit codes, a whitelist of what an error may show (never a raw error object, which
 * can carry request bodies and so secrets), and an AbortSignal that fires on Ctrl-C / SIGTERM.
 *
 * It also owns the output policy, so commands only render their result: progress bars
 * (`progress()`, `byteProgress()`, `steps()`: on a terminal only, plain lines when stderr is a
 * file, nothing in CI or under --json), and warnings: a result's `warnings` are printed to stderr
 * once, after the command's own output, and go into the envelope's `warnings` (not twice into
 * the JSON result).
 */
export abstract class MigrateCommand<Result> extends Command {
  static override enableJsonFlag = true
  /** Fires on the first SIGINT/SIGTERM; workflows stop starting new work and save what they have. */
  protected readonly abortController = new AbortController()
  #exitCode: ExitCode = EXIT_CODES.ok
  readonly #bars: ProgressBar[] = []
  /** Set by SIGTERM: ends the process if the run has not stopped by then. */
  #deadline: NodeJS.Timeout | undefined
  #signalHandlers: Array<[NodeJS.Signals, () => void]> = []
  readonly #warnings: string[] = []

  protected get signal(): AbortSignal {
    return this.abortController.signal
  }

  /** True under --json: nothing but the envelope reaches stdout, nothing at all stderr. */
  protected get quiet(): boolean {
    return this.jsonEnabled()
  }

  abstract override run(): Promise<Result>

  /** Bytes so far (a dump, a decryption) on a terminal's stderr; nothing when piped, in CI or under --json. */
  protected byteProgress(label: string): ((bytes: number) => void) | undefined {
    if (this.quiet || !isInteractive()) return undefined
    let last = 0
    let shown = false
    this.#bars.push({
      increment() {},
      stop() {
        if (shown) process.stderr.write('\n')
        shown = false
      },
    })
    return (bytes) => {
      if (Date.now() - last < 250) return
      last = Date.now()
      shown = true
      process.stderr.write(`\r${label} ${(bytes / 1_048_576).toFixed(1)} MiB`)
    }
  }

  /** A Progress for a workflow: the bar starts when the workflow knows its total. */
  protected progress(label: string, unit: string, options: {showLimit?: boolean} = {}): Progress {
    let bar: ProgressBar | undefined
    return {
      advance: (done, failed, limit) =>
        bar?.increment(done, {...(failed === undefined ? {} : {failed}), ...(limit === undefined ? {} : {limit})}),
      start: (total) => {
        bar?.stop()
        bar = startProgressBar({enabled: !this.quiet, label, showLimit: options.showLimit, total, unit})
        this.#bars.push(bar)
      },
      stop: () => bar?.stop(),
    }
  }

  /** The steps of a short workflow ("Reading CKAN…"), on a terminal's stderr only. */
  protected steps(): (step: string) => void {
    return (step) => {
      if (!this.quiet && isInteractive()) this.logToStderr(`${step}…`)
    }
  }

  /** Ends a successful run with a documented non-zero code (e.g. audit NOT READY) after printing the result. */
  protected setExitCode(code: ExitCode): void {
    this.#exitCode = code
  }

  protected override async catch(error: Error & {exitCode?: number; oclif?: {exit?: number}}): Promise<unknown> {
    // A run that failed reading its flags did read them: without this, oclif's development mode
    // (tests, bin/dev.js) adds "Command … did not parse its arguments" under a --json parse error.
    this.parsed = true
    if (error instanceof Errors.CLIError && !(error instanceof MigrateError)) return super.catch(error)
    const migrateError = error instanceof MigrateError ? error : translateSystemError(error)
    const exit = migrateError?.exitCode ?? EXIT_CODES.unexpected
    const message = migrateError?.message ?? `Unexpected error: ${describeError(error)}`
    const suggestion =
      migrateError?.suggestion ??
      (migrateError ? undefined : 'This is a bug in ckan-migrate; please report it with the command you ran.')
    const cliError = new Errors.CLIError(message, {
      code: errorCodeName(exit),
      exit,
      suggestions: suggestion ? [suggestion] : undefined,
    })
    // A CLIError's stack would be printed in development mode; the one-line message is what we promise.
    Object.defineProperty(cliError, 'stack', {value: `Error: ${message}`})
    return super.catch(cliError)
  }

  protected override async finally(error: Error | undefined): Promise<unknown> {
    for (const bar of this.#bars.splice(0)) bar.stop()
    for (const [signal, handler] of this.#signalHandlers) process.off(signal, handler)
    this.#signalHandlers = []
    // A SIGTERM deadline stays armed (unref'd): a run that returned but whose process lingers
    // (a socket still open) still ends on time.
    if (!error && this.#exitCode !== EXIT_CODES.ok) process.exitCode = this.#exitCode
    return super.finally(error)
  }

  protected override async init(): Promise<void> {
    await super.init()
    // The warnings policy (see the class comment): every command's run() goes through here.
    const run = this.run.bind(this)
    this.run = async () => {
      const result = await run()
      for (const bar of this.#bars.splice(0)) bar.stop()
      const warnings = (result as {warnings?: unknown} | undefined)?.warnings
      if (Array.isArray(warnings))
        for (const warning of warnings) if (!this.#warnings.includes(String(warning))) this.warn(String(warning))
      return result
    }
    let interrupts = 0
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      const handler = () => {
        interrupts += 1
        // A second signal, or SIGTERM at any time, may not wait for in-flight work to give up:
        // whatever it blocks on (a server that never answers, a lock), the process ends now
        // (SIGINT twice) or within SIGTERM_GRACE_MS (SIGTERM: what systemd and docker stop send).
        const stop = () => hardExit(this.jsonEnabled() ? this.#interruptedJson() : undefined)
        if (interrupts > 1) stop()
        if (signal === 'SIGTERM' && !this.#deadline) this.#deadline = setTimeout(stop, SIGTERM_GRACE_MS).unref()
        this.logToStderr(
          signal === 'SIGTERM'
            ? 'Terminated: saving the run and stopping.'
            : 'Interrupted: finishing what is in flight and saving the run (press Ctrl-C again to quit now).',
        )
        this.abortController.abort(new MigrateError('Interrupted', {exitCode: EXIT_CODES.interrupted}))
      }
      process.on(signal, handler)
      this.#signalHandlers.push([signal, handler])
    }
  }

  #interruptedJson(): JsonFailure {
    return {
      error: {
        code: errorCodeName(EXIT_CODES.interrupted),
        message: 'Interrupted',
        suggestion: 'Run the same command again with the same --out to go on.',
      },
      status: EXIT_CODES.interrupted,
      warnings: this.#warnings,
    }
  }

  /** Whitelist, never spread: a raw error can carry request bodies, and those can carry secrets. */
  protected override toErrorJson(error: unknown): JsonFailure {
    const cliError = error instanceof Errors.CLIError ? error : undefined
    const message = error instanceof Error ? error.message : String(error)
    const suggestion = cliError?.suggestions?.[0]
    const status = cliError?.oclif.exit || EXIT_CODES.unexpected
    // oclif's own parse errors (missing or unknown flag) carry no code: name them by their exit code.
    return {
      error: {code: cliError?.code ?? errorCodeName(status), message, ...(suggestion ? {suggestion} : {})},
      status,
      warnings: this.#warnings,
    }
  }

  protected override toSuccessJson(result: Result): JsonSuccess<Result> {
    // The warnings are the envelope's; a result does not carry them a second time.
    if (result && typeof result === 'object' && Array.isArray((result as {warnings?: unknown}).warnings)) {
      const {warnings: _warnings, ...rest} = result as Result & {warnings: unknown}
      return {result: rest as Result, status: this.#exitCode, warnings: this.#warnings}
    }
    return {result, status: this.#exitCode, warnings: this.#warnings}
  }

  override warn(input: Error | string): Error | string {
    this.#warnings.push(typeof input === 'string' ? input : input.message)
    return super.warn(input)
  }
}
