import {Worker} from 'node:worker_threads'

import type {AuditBreakdown} from '../audit/readiness-breakdown.js'
import type {FigureReply} from './figure-worker.js'
import {type Html, trusted} from './html.js'

/**
 * Where the readiness page's charts are drawn: on a thread of their own (figure-worker.ts) when
 * one could be started, else on this one. Loading the charting library and compiling its code
 * cost more CPU than the 10 % of the audit's time the page may add (docs/benchmarks.md, the
 * readiness page); on its own thread, started while the CLI itself still loads
 * (`preloadFigureDrawer`, from bin/run.js), that work runs on a core the audit leaves idle, and
 * the charts are ready soon after the audit's figures arrive. The thread never holds the process
 * open: it is referenced only while a drawing is asked of it.
 */

type Drawer = {
  draw(breakdown: AuditBreakdown): Promise<Html>
}

let drawer: Drawer | undefined

/** Starts the drawing thread, once per process. Never fails: a thread that cannot start means drawing on this one. */
export function startFigureDrawer(): void {
  drawer ??= threadDrawer() ?? IN_THREAD
}

/**
 * For the launcher (bin/run.js, the executable's entry): starts the drawing thread when the
 * command line asks for an HTML page (`--html`), before oclif and the command are loaded. If the
 * command then draws nothing (a flag's value that happened to read --html, `--help`), the unused
 * thread ends with the process.
 */
export function preloadFigureDrawer(argv: readonly string[]): void {
  if (argv.some((argument) => argument === '--html' || argument.startsWith('--html='))) startFigureDrawer()
}

/** The readiness page's charts for this breakdown, drawn where startFigureDrawer decided (here if it was never called). */
export async function drawReadinessFigures(breakdown: AuditBreakdown): Promise<Html> {
  return (drawer ?? IN_THREAD).draw(breakdown)
}

const IN_THREAD: Drawer = {
  async draw(breakdown) {
    const {renderFigures} = await import('./readiness-figures.js')
    return renderFigures(breakdown)
  },
}

function threadDrawer(): Drawer | undefined {
  const source = new URL(import.meta.url).pathname.endsWith('.ts')
  let worker: Worker
  try {
    // From the sources (tests, bin/dev.js) the thread runs the TypeScript through tsx, as they do.
    worker = new Worker(new URL(`./figure-worker.${source ? 'ts' : 'js'}`, import.meta.url), {
      execArgv: source ? [...process.execArgv, '--import', 'tsx'] : undefined,
    })
  } catch {
    return undefined
  }
  let failed = false
  let nextId = 1
  const waiting = new Map<number, (reply: FigureReply | undefined) => void>()
  const settle = (id: number, reply: FigureReply | undefined) => {
    const resolve = waiting.get(id)
    if (!resolve) return
    waiting.delete(id)
    if (waiting.size === 0) worker.unref()
    resolve(reply)
  }
  // A thread that failed (it could not load, it threw, it exited) leaves the drawing to this one.
  const fail = () => {
    failed = true
    for (const id of [...waiting.keys()]) settle(id, undefined)
  }
  worker.on('message', (reply: FigureReply) => settle(reply.id, reply))
  worker.on('error', fail)
  worker.on('exit', fail)
  // After the listeners: adding a 'message' listener references the thread's port again.
  worker.unref()
  return {
    async draw(breakdown) {
      const reply = failed
        ? undefined
        : await new Promise<FigureReply | undefined>((resolve) => {
            const id = nextId++
            waiting.set(id, resolve)
            worker.ref()
            worker.postMessage({breakdown, id})
          })
      return reply && 'html' in reply ? trusted(reply.html) : IN_THREAD.draw(breakdown)
    },
  }
}
