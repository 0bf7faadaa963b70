/** How much a finding matters for the upgrade to CKAN 2.10/2.11. */
export type Severity = 'blocker' | 'info' | 'warning'

/**
 * One thing the audit found. `id` is stable kebab-case (documented in docs/commands/audit.md, so
 * scripts may match on it); `sample` names a few affected users (or harvest sources, or settings),
 * never a key, token or secret.
 */
export type AuditFinding = {
  /** How many users, settings, sources or rows are affected. */
  count: number
  /** Extra counts behind the finding, e.g. legacy keys by user state. */
  details?: Record<string, number | string>
  /** One sentence saying how to fix it. */
  fix: string
  id: string
  /** At most SAMPLE_SIZE affected names, sorted (sortFindings), whichever the database met first. */
  sample: string[]
  severity: Severity
  /** One line saying what was found. */
  title: string
}

/** How many names a finding's sample holds at most. */
export const SAMPLE_SIZE = 10

/** Severities from most to least serious, for sorting and summaries. */
export const SEVERITY_ORDER: readonly Severity[] = ['blocker', 'warning', 'info']

/**
 * Sorts findings blockers first, keeping the order within a severity, and sorts each sample (by
 * code point, the same on every machine): the names are whichever the database met first, so
 * their order said nothing and changed between runs.
 */
export function sortFindings(findings: readonly AuditFinding[]): AuditFinding[] {
  return findings
    .map((finding) => ({...finding, sample: [...finding.sample].sort(byCodePoint)}))
    .sort((a, b) => SEVERITY_ORDER.indexOf(a.severity) - SEVERITY_ORDER.indexOf(b.severity))
}

function byCodePoint(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

/** Keeps the first SAMPLE_SIZE names pushed to it: memory stays flat however many match. */
export class SampleCollector {
  count = 0
  readonly names: string[] = []

  add(name: string): void {
    this.count += 1
    if (this.names.length < SAMPLE_SIZE) this.names.push(name)
  }
}
