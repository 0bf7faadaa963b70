import type {AuditFinding} from './audit-finding.js'

export type AuditVerdict = {
  /** Number of blocker findings: the site is READY only when this is 0. */
  blockers: number
  infos: number
  status: 'NOT READY' | 'READY'
  warnings: number
}

/** READY when no finding is a blocker; the counts behind the verdict come with it. */
export function decideVerdict(findings: readonly AuditFinding[]): AuditVerdict {
  const count = (severity: AuditFinding['severity']) =>
    findings.filter((finding) => finding.severity === severity).length
  const blockers = count('blocker')
  return {blockers, infos: count('info'), status: blockers === 0 ? 'READY' : 'NOT READY', warnings: count('warning')}
}
