import {Args, Flags} from '@oclif/core'

import {MigrateCommand} from '../lib/cli/migrate-command.js'
import {renderRunSummary} from '../lib/report/run-summary.js'
import {reportRun, type RunReportResult} from '../lib/workflows/report.js'

export default class Report extends MigrateCommand<RunReportResult> {
  static override args = {
    run_dir: Args.string({
      description: 'The run folder (--out of issue-tokens, rewrite-config, verify, bundle, …).',
      required: true,
    }),
  }
  static override description = `Read-only: reads the run folder (run.json, journal.jsonl, the token store's times and users, bundles/) and says what the run did: tokens issued over time (throughput, retries, unknown outcomes reconciled), services rewritten, bundles written, verify results. On a folder a crash left half done it names what is unfinished and the command that resumes it. --html writes the run's page: one self-contained HTML file with static charts and their tables, no script, nothing loaded from elsewhere, no secret.`
  static override examples = [
    '<%= config.bin %> <%= command.id %> ./run-2026-05',
    '<%= config.bin %> <%= command.id %> ./run-2026-05 --html run-2026-05.html',
    '<%= config.bin %> <%= command.id %> ./run-2026-05 --json | jq .result.state',
  ]
  static override flags = {
    html: Flags.string({
      summary:
        "Write the run's page to this file: one self-contained HTML page to send to the sign-off and service owners.",
    }),
  }
  static override summary = "Summarise a run folder (also one a crash left half done) and write the run's HTML page."

  async run(): Promise<RunReportResult> {
    const {args, flags} = await this.parse(Report)
    const result = await reportRun({htmlPath: flags.html, runDir: args.run_dir})
    this.log(renderRunSummary(result))
    return result
  }
}
