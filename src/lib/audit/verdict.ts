import type {UpgradeTarget} from '../site/ckan-version.js'
import type {AuditFinding} from './audit-finding.js'

export type AuditVerdict = {
  /** Number of blocker findings: the site is READY only when this is 0. */
  blockers: number
  infos: number
  status: 'NOT READY' | 'READY'
  /** The CKAN version the verdict is for (`audit --target`). */
  target: UpgradeTarget
  warnings: number
}

/** READY for `target` when no finding is a blocker; the counts behind the verdict come with it. */
export function decideVerdict(findings: readonly AuditFinding[], target: UpgradeTarget): AuditVerdict {
  const count = (severity: AuditFinding['severity']) =>
    findings.filter((finding) => finding.severity === severity).length
  const blockers = count('blocker')
  return {
    blockers,
    infos: count('info'),
    status: blockers === 0 ? 'READY' : 'NOT READY',
    target,
    warnings: count('warning'),
  }
}
