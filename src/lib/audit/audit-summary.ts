import {describeTarget} from '../site/ckan-version.js'
import type {AuditFinding} from './audit-finding.js'
import type {AuditResult} from './audit-result.js'

const LABEL: Record<AuditFinding['severity'], string> = {blocker: 'BLOCKER', info: 'INFO   ', warning: 'WARNING'}

/**
 * The readable summary `audit` prints on a terminal. Names come from the database and may hold
 * tabs, line breaks or escape sequences: they are shown escaped so they cannot rewrite the screen.
 */
export function renderAuditSummary(result: AuditResult): string {
  const {summary, verdict} = result
  const version = result.ckan.version ?? 'unknown'
  const lines = [
    `CKAN audit: ${verdict.status} for ${describeTarget(verdict.target)} (${plural(verdict.blockers, 'blocker')}, ${plural(verdict.warnings, 'warning')}, ${plural(verdict.infos, 'info')})`,
    `Database:     ${result.database.url} (from ${result.database.source})`,
    `ckan.ini:     ${result.ckanIni ?? 'not given'}`,
    `CKAN version: ${version} (alembic head ${result.ckan.alembicHeads.join(', ') || 'none'})${result.ckan.status ? `; status_show says ${result.ckan.status.ckanVersion}` : ''}`,
    `Users:        ${summary.users.total} (${summary.users.active} active, ${summary.users.pending} pending, ${summary.users.deleted} deleted; ${summary.users.sysadmins} active sysadmins)`,
    `Legacy keys:  ${summary.legacyKeys.total} (${summary.legacyKeys.active} active, ${summary.legacyKeys.pending} pending, ${summary.legacyKeys.deleted} deleted users)`,
    `API tokens:   ${summary.apiTokens.total} held by ${summary.apiTokens.users} users, ${summary.apiTokens.neverUsed} never used`,
  ]
  if (result.csv) lines.push(`CSV report:   ${result.csv.path} (${result.csv.rows} users)`)
  if (result.html) lines.push(`HTML page:    ${result.html.path}`)
  for (const finding of result.findings) {
    lines.push('', `${LABEL[finding.severity]}  ${finding.id}: ${printable(finding.title)}`)
    if (finding.sample.length > 0) {
      const more = finding.count > finding.sample.length ? `, … (${finding.count - finding.sample.length} more)` : ''
      lines.push(`         e.g. ${finding.sample.map((name) => printable(name)).join(', ')}${more}`)
    }
    lines.push(`         Fix: ${finding.fix}`)
  }
  lines.push(
    '',
    verdict.status === 'READY'
      ? 'READY: no blockers. Go on with the runbook.'
      : `NOT READY: fix the ${plural(verdict.blockers, 'blocker')} above, then run the audit again.`,
  )
  return lines.join('\n')
}

/** Escapes control characters (tab, CR, LF, ESC, …) so a name prints on one line as itself. */
export function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001F\u007F-\u009F]/g, (character) => {
    if (character === '\t') return String.raw`\t`
    if (character === '\n') return String.raw`\n`
    if (character === '\r') return String.raw`\r`
    return `\\x${character.codePointAt(0)!.toString(16).padStart(2, '0')}`
  })
}

function plural(count: number, word: string): string {
  return `${count} ${word}${count === 1 ? '' : 's'}`
}
