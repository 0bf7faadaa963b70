import {spawn} from 'node:child_process'
import {stat} from 'node:fs/promises'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

import {PROJECT_ROOT} from './run-cli.js'

export type ChildRun = {code: null | number; output: string; signal: NodeJS.Signals | null; signalled: boolean}

export type ChildRunOptions = {
  /** Send this signal once `journal` has grown by more than `afterBytes`, plus `delayMs`. */
  interrupt?:
    | {afterBytes?: number; delayMs: number; journal: string; signal: NodeJS.Signals}
    /** Send this signal once `when` resolves (e.g. a test server holds a request in flight). */
    | {signal: NodeJS.Signals; when: Promise<unknown>}
  /** After the first signal, send this one once the output matches (e.g. a second Ctrl-C after "press Ctrl-C again"). */
  thenInterrupt?: {output: RegExp; signal: NodeJS.Signals}
}

/**
 * Runs `ckan-migrate ...args` as a real child process (`node --import tsx bin/dev.js`, CI=true),
 * optionally sending it a signal (SIGKILL, SIGINT) once it is at work: once the run's journal has
 * grown. Returns its exit code or signal and everything it wrote to stdout and stderr.
 */
export async function runCliChild(args: string[], options: ChildRunOptions = {}): Promise<ChildRun> {
  const {interrupt} = options
  const journalSize = async () =>
    interrupt && 'journal' in interrupt ? ((await stat(interrupt.journal).catch(() => undefined))?.size ?? 0) : 0
  const startSize = await journalSize()
  const child = spawn(process.execPath, ['--import', 'tsx', join(PROJECT_ROOT, 'bin/dev.js'), ...args], {
    cwd: PROJECT_ROOT,
    env: {...process.env, CI: 'true', NODE_OPTIONS: ''},
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const chunks: Buffer[] = []
  child.stdout.on('data', (chunk: Buffer) => chunks.push(chunk))
  child.stderr.on('data', (chunk: Buffer) => chunks.push(chunk))
  let running = true
  const exited = new Promise<{code: null | number; signal: NodeJS.Signals | null}>((resolve) => {
    child.on('close', (code, signal) => {
      running = false
      resolve({code, signal})
    })
  })
  let sent = false
  if (interrupt && 'when' in interrupt) {
    await Promise.race([interrupt.when, exited])
    if (running) sent = child.kill(interrupt.signal)
  } else if (interrupt) {
    while (running && (await journalSize()) <= startSize + (interrupt.afterBytes ?? 200)) await sleep(10)
    await sleep(interrupt.delayMs)
    if (running) sent = child.kill(interrupt.signal)
  }
  const then = options.thenInterrupt
  if (sent && then) {
    while (running && !then.output.test(Buffer.concat(chunks).toString('utf8'))) await sleep(10)
    if (running) child.kill(then.signal)
  }
  const {code, signal} = await exited
  return {code, output: Buffer.concat(chunks).toString('utf8'), signal, signalled: sent}
}
