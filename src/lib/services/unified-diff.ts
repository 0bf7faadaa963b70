import {splitLines} from './ini-editor.js'

/**
 * A unified diff (`diff -u` style, 3 lines of context) between two versions of a text file, for
 * `--dry-run` plans. Every line shown (context included) goes through `redactLine`, so a caller
 * can hide secret values; line endings are not shown (a CRLF file diffs like an LF one).
 */

export type UnifiedDiffOptions = {
  context?: number
  /** Label of the old and new file in the `---`/`+++` header. */
  newLabel: string
  oldLabel: string
  redactLine?: (line: string) => string
}

type Operation = {kind: ' ' | '+' | '-'; newIndex: number; oldIndex: number; text: string}

/** Longest common subsequence on lines, after trimming the common head and tail. */
function diffLines(oldLines: readonly string[], newLines: readonly string[]): Operation[] {
  let head = 0
  while (head < oldLines.length && head < newLines.length && oldLines[head] === newLines[head]) head += 1
  let tail = 0
  while (
    tail < oldLines.length - head &&
    tail < newLines.length - head &&
    oldLines[oldLines.length - 1 - tail] === newLines[newLines.length - 1 - tail]
  )
    tail += 1
  const oldMiddle = oldLines.slice(head, oldLines.length - tail)
  const newMiddle = newLines.slice(head, newLines.length - tail)
  const operations: Operation[] = []
  for (let index = 0; index < head; index += 1)
    operations.push({kind: ' ', newIndex: index, oldIndex: index, text: oldLines[index]!})

  const rows = oldMiddle.length
  const columns = newMiddle.length
  if (rows * columns > 4_000_000) {
    // Too big to align cheaply: show the middle as one replaced block.
    for (const [index, text] of oldMiddle.entries())
      operations.push({kind: '-', newIndex: head, oldIndex: head + index, text})
    for (const [index, text] of newMiddle.entries())
      operations.push({kind: '+', newIndex: head + index, oldIndex: head + rows, text})
  } else {
    const width = columns + 1
    const lengths = new Uint32Array((rows + 1) * width)
    for (let row = rows - 1; row >= 0; row -= 1) {
      for (let column = columns - 1; column >= 0; column -= 1) {
        lengths[row * width + column] =
          oldMiddle[row] === newMiddle[column]
            ? lengths[(row + 1) * width + column + 1]! + 1
            : Math.max(lengths[(row + 1) * width + column]!, lengths[row * width + column + 1]!)
      }
    }
    let row = 0
    let column = 0
    while (row < rows || column < columns) {
      if (row < rows && column < columns && oldMiddle[row] === newMiddle[column]) {
        operations.push({kind: ' ', newIndex: head + column, oldIndex: head + row, text: oldMiddle[row]!})
        row += 1
        column += 1
      } else if (
        row < rows &&
        (column === columns || lengths[(row + 1) * width + column]! >= lengths[row * width + column + 1]!)
      ) {
        // On a tie the old line goes first: unified diffs show `-` lines before the `+` lines
        // that replace them (as diff -u and git diff do).
        operations.push({kind: '-', newIndex: head + column, oldIndex: head + row, text: oldMiddle[row]!})
        row += 1
      } else {
        operations.push({kind: '+', newIndex: head + column, oldIndex: head + row, text: newMiddle[column]!})
        column += 1
      }
    }
  }
  for (let index = 0; index < tail; index += 1) {
    const oldIndex = oldLines.length - tail + index
    operations.push({kind: ' ', newIndex: newLines.length - tail + index, oldIndex, text: oldLines[oldIndex]!})
  }
  return operations
}

/** The diff as text (empty when nothing differs). */
export function unifiedDiff(oldText: string, newText: string, options: UnifiedDiffOptions): string {
  const oldLines = splitLines(oldText).lines.map((line) => line.text)
  const newLines = splitLines(newText).lines.map((line) => line.text)
  const operations = diffLines(oldLines, newLines)
  if (!operations.some((operation) => operation.kind !== ' ')) return ''
  const context = options.context ?? 3
  const redact = options.redactLine ?? ((line: string) => line)

  // Group changed operations into hunks with `context` lines around them.
  const hunks: Array<{end: number; start: number}> = []
  for (const [index, operation] of operations.entries()) {
    if (operation.kind === ' ') continue
    const start = Math.max(0, index - context)
    const end = Math.min(operations.length, index + context + 1)
    const last = hunks.at(-1)
    if (last && start <= last.end) last.end = Math.max(last.end, end)
    else hunks.push({end, start})
  }
  const out = [`--- ${options.oldLabel}`, `+++ ${options.newLabel}`]
  for (const hunk of hunks) {
    const slice = operations.slice(hunk.start, hunk.end)
    const oldCount = slice.filter((operation) => operation.kind !== '+').length
    const newCount = slice.filter((operation) => operation.kind !== '-').length
    const oldStart =
      oldCount === 0 ? slice[0]!.oldIndex : slice.find((operation) => operation.kind !== '+')!.oldIndex + 1
    const newStart =
      newCount === 0 ? slice[0]!.newIndex : slice.find((operation) => operation.kind !== '-')!.newIndex + 1
    out.push(`@@ -${oldStart},${oldCount} +${newStart},${newCount} @@`)
    for (const operation of slice) out.push(`${operation.kind}${redact(operation.text)}`)
  }
  return `${out.join('\n')}\n`
}
