/**
 * The thread that draws the readiness page's charts (figure-drawer.ts). It loads the charting
 * library and draws one sample set of figures as soon as it starts, so that by the time the
 * audit's figures arrive the library is evaluated and its code compiled; then it draws what it
 * is sent. It reads and writes nothing but its messages and its compile cache.
 */
import {lstatSync, mkdirSync} from 'node:fs'
import {enableCompileCache} from 'node:module'
import {homedir} from 'node:os'
import {join} from 'node:path'
import {parentPort} from 'node:worker_threads'

import type {AuditBreakdown} from '../audit/readiness-breakdown.js'

export type FigureRequest = {breakdown: AuditBreakdown; id: number}
export type FigureReply = {error: string; id: number} | {html: string; id: number}

/**
 * V8's compiled code of the charting library, kept between runs (Node's module compile cache): it
 * saves about a fifth of this thread's start (docs/benchmarks.md, the readiness page). Compiled
 * code is code, so it is kept only in the user's own cache folder (CKAN_MIGRATE_CACHE_DIR, else
 * $XDG_CACHE_HOME/ckan-migrate, else ~/.cache/ckan-migrate, where the single executable unpacks
 * its files too), in a folder this user owns that nobody else can write; otherwise the library
 * is compiled afresh. Never from the sources (tsx compiles those).
 */
function useCompileCache(): void {
  if (new URL(import.meta.url).pathname.endsWith('.ts')) return
  try {
    const cache =
      process.env.CKAN_MIGRATE_CACHE_DIR ||
      join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'ckan-migrate')
    const folder = join(cache, 'compile-cache')
    mkdirSync(folder, {mode: 0o700, recursive: true})
    for (const path of [cache, folder]) {
      const info = lstatSync(path)
      if (!info.isDirectory() || (process.getuid && info.uid !== process.getuid()) || (info.mode & 0o022) !== 0) return
    }
    enableCompileCache(folder)
  } catch {
    // No cache: the library is compiled as on a first run.
  }
}

useCompileCache()

/** Figures with every chart's bars and labels in use: what the warm-up draws (and throws away). */
const SAMPLE: AuditBreakdown = {
  credentials: {
    people: {both: 120, keyOnly: 3400, neither: 56_000, tokenOnly: 900},
    sysadmins: {both: 2, keyOnly: 5, neither: 1, tokenOnly: 3},
  },
  keyHolderActivity: {
    basis: ['activity.timestamp'],
    buckets: {days30: 410, days90: 730, days365: 1200, never: 800, older: 380},
  },
  now: '2026-01-01T00:00:00Z',
  services: [],
  tokenExpiry: {days30: 40, days7: 12, expired: 7, later: 600, never: 3100, total: 3759},
}

// Imported once the compile cache is on (a static import would be compiled before it), and
// without a top-level await, which the single executable's CommonJS copy of this file cannot have.
const drawing = import('./readiness-figures.js').then(({renderFigures}) => {
  renderFigures(SAMPLE)
  return renderFigures
})
drawing.catch(() => {})

parentPort!.on('message', (request: FigureRequest) => {
  drawing
    .then((renderFigures): FigureReply => ({html: renderFigures(request.breakdown).text, id: request.id}))
    .catch((error: unknown): FigureReply => ({
      error: error instanceof Error ? error.message : String(error),
      id: request.id,
    }))
    .then((reply) => parentPort!.postMessage(reply))
})
