import type {CkanStatus} from '../site/ckan-api-client.js'
import type {CkanVersion} from '../site/ckan-version.js'
import type {AuditFinding} from './audit-finding.js'
import type {AuditBreakdown} from './readiness-breakdown.js'
import type {UserSummary} from './database-findings.js'
import type {AuditVerdict} from './verdict.js'

/** What `ckan-migrate audit` returns: the `result` of its --json envelope (docs/commands/audit.md). */
export type AuditResult = {
  /** The readiness page's figures (credential states, key holders' last activity, token expiry, services); null without --html. */
  breakdown: AuditBreakdown | null
  ckan: {
    /** Every row of alembic_version. */
    alembicHeads: string[]
    /** status_show's answer when --ckan-url was given. */
    status: CkanStatus | null
    /** The version the database schema belongs to; null when unknown or older than 2.9. */
    version: CkanVersion | null
  }
  /** The ckan.ini read (top of the chain), or null. */
  ckanIni: null | string
  /** The CSV written, or null without --csv. */
  csv: null | {path: string; rows: number}
  database: {
    /** Where the URL came from: --database-url, CKAN_SQLALCHEMY_URL, sqlalchemy.url in FILE. */
    source: string
    /** The URL with its password replaced by ***. */
    url: string
  }
  /** Blockers first, then warnings, then infos. */
  findings: AuditFinding[]
  /** The readiness page written (--html), or null. */
  html: null | {bytes: number; path: string}
  /** Counts over every user (only when the api_token table exists are token counts non-zero). */
  summary: UserSummary
  verdict: AuditVerdict
  /** Things the user should know that are not findings (e.g. a postgres:// URL). */
  warnings: string[]
}
