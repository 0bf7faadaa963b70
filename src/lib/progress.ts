/**
 * How a workflow reports progress on long work. Workflows never print: the CLI's base command
 * (src/lib/cli/migrate-command.ts) turns this into a bar on a terminal, plain lines when stderr is
 * a file or pipe, and nothing in CI or under --json.
 */
export type Progress = {
  /**
   * `done` more items finished; `failed`, when given, is the number of failures so far, and
   * `limit` the concurrency limit the requests run under now (shown beside the rate).
   */
  advance(done: number, failed?: number, limit?: number): void
  /** The amount of work, once known. */
  start(total: number): void
  /** The work is over (optional: the base command stops every bar when the command ends). */
  stop?(): void
}
