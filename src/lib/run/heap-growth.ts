import {getHeapSpaceStatistics, setFlagsFromString} from 'node:v8'

export type HeapGrowthLimits = {
  /** V8's new space (both semi-spaces) grows to about this size, no further. */
  newSpaceMiB: number
  /** After each full GC the old generation may grow by this percentage of what survived. */
  oldGrowingPercent: number
}

/**
 * Keeps V8 from growing its heap far beyond what a long, busy loop keeps alive (issue-tokens
 * holds a few MiB per run whatever the number of users; V8 would still let its heap reach
 * several times that). Two of V8's heuristics are tightened, both read by V8 each time it
 * applies them, so they can change in a running process without node flags on the command line:
 *
 * - new space doubles whenever the bytes that survived scavenges since it last grew exceed its
 *   size; with requests, fsyncs and report rows always in flight, a 100k-user run grows it to its
 *   maximum (2 × 64 MiB on Node without pointer compression). `--semi-space-growth-factor=1` once
 *   it reaches `newSpaceMiB` stops that.
 * - after a full GC, the old generation may grow by a factor of up to 4 of what survived before
 *   the next one. `--heap-growing-percent` makes it a fixed, smaller factor: more (cheap, mostly
 *   concurrent) full GCs over a small live set instead of tens of MiB of garbage.
 *
 * Returns the function that restores V8's defaults.
 */
export function limitHeapGrowth(limits: HeapGrowthLimits): () => void {
  const newSpace = () =>
    (getHeapSpaceStatistics().find((space) => space.space_name === 'new_space')?.space_size ?? 0) / 2 ** 20
  let capped = false
  const cap = () => {
    if (capped || newSpace() < limits.newSpaceMiB) return
    setFlagsFromString('--semi-space-growth-factor=1')
    capped = true
    clearInterval(timer)
  }
  setFlagsFromString(`--heap-growing-percent=${limits.oldGrowingPercent}`)
  const timer = setInterval(cap, 20)
  timer.unref()
  cap()
  return () => {
    clearInterval(timer)
    if (capped) setFlagsFromString('--semi-space-growth-factor=2')
    setFlagsFromString('--heap-growing-percent=0')
  }
}
