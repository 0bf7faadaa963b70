import {printable} from '../audit/audit-summary.js'
import type {RunReportResult} from './run-report.js'

/** What `report` prints on a terminal: the state, what is unfinished, the headline counts. */
export function renderRunSummary(report: RunReportResult): string {
  const {tokens, verify} = report
  const lines = [
    `Run ${report.runId} (${report.site.ckanUrl}): ${report.state.toUpperCase()}`,
    `Tokens:   ${tokens.issued} issued for ${tokens.users} users, ${tokens.retries} retries, ${tokens.unknownOutcomes.settled} unknown outcomes reconciled, ${tokens.usersFailed} users failed`,
    `Verify:   ${verify.checked === 0 ? 'not run' : `${verify.ok} of ${verify.checked} tokens work`}`,
    `Services: ${report.serviceTokens.length} service tokens, ${report.configs.length} files rewritten`,
    `Bundles:  ${report.bundles.files} in ${report.bundles.folder}`,
  ]
  for (const command of report.unfinished) {
    lines.push('', `UNFINISHED  ${printable(command.detail)}`, `            Resume: ${printable(command.resume)}`)
  }
  if (report.html) lines.push('', `HTML page: ${report.html.path}`)
  return lines.join('\n')
}
