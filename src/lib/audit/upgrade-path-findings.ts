import type {Queryable} from '../site/ckan-database.js'
import {describeTarget, upgradeSteps, type UpgradeTarget} from '../site/ckan-version.js'
import {type AuditFinding, SAMPLE_SIZE} from './audit-finding.js'

/**
 * Active users whose email equals another active user's once case is ignored, in groups where
 * the spellings differ (exact duplicates are duplicate-active-emails'). $1 = the sample size.
 */
const CASE_DUPLICATE_EMAILS = `
  SELECT count(*)::int AS n, (array_agg(u.name ORDER BY u.name))[1:$1] AS names
  FROM "user" u
  JOIN (SELECT lower(email) AS folded FROM "user"
        WHERE state = 'active' AND email IS NOT NULL AND email <> ''
        GROUP BY lower(email) HAVING count(DISTINCT email) > 1) d ON lower(u.email) = d.folded
  WHERE u.state = 'active'`

const ACTIVITY_TABLES = `
  SELECT to_regclass('activity') IS NOT NULL AND to_regclass('package') IS NOT NULL AS has_activity,
         to_regclass('revision') IS NOT NULL AS has_revision`

/**
 * Dataset activities migrate_package_activity.py has not rewritten: those of public datasets
 * whose data has no "actor" (2.9's activity_stream_item and the script both write one; CKAN's own
 * count, num_unmigrated in ckan/migration/migrate_package_activity.py, keys on it too).
 */
const UNMIGRATED_ACTIVITY = `
  SELECT (SELECT count(*)::int FROM revision) AS revisions,
         (SELECT count(*)::int FROM activity a JOIN package p ON a.object_id = p.id
          WHERE a.activity_type IN ('new package', 'changed package')
            AND coalesce(a.data, '') NOT LIKE '%"actor"%' AND p.private = false) AS unmigrated`

/**
 * The findings of the upgrade to `target` beyond 2.10/2.11's (ckan-version.ts upgradeSteps):
 * for 2.12, emails that collide once lowercased (migration 108) and dataset history still only in
 * the revision tables (migration 107 drops them).
 */
export async function upgradePathFindings(sql: Queryable, target: UpgradeTarget): Promise<AuditFinding[]> {
  const steps = upgradeSteps(target)
  const findings: AuditFinding[] = []
  const to = describeTarget(target)
  if (steps.caseInsensitiveEmailIndex) {
    const {rows} = await sql.query<{n: number; names: null | string[]}>(CASE_DUPLICATE_EMAILS, [SAMPLE_SIZE])
    const {n, names} = rows[0]!
    if (n > 0) {
      findings.push({
        count: n,
        fix: `Give each of them an address of their own, or delete the duplicate accounts (ckan db duplicate_emails lists them): ${to}'s migration 108 adds a unique index on lower(email) of active users and fails otherwise.`,
        id: 'case-duplicate-active-emails',
        sample: names ?? [],
        severity: 'blocker',
        title: `${n} active users have an email that differs from another active user's only in case`,
      })
    }
  }
  if (steps.dropsRevisionTables) {
    const tables = (await sql.query<{has_activity: boolean; has_revision: boolean}>(ACTIVITY_TABLES)).rows[0]!
    if (tables.has_activity && tables.has_revision) {
      const {revisions, unmigrated} = (await sql.query<{revisions: number; unmigrated: number}>(UNMIGRATED_ACTIVITY))
        .rows[0]!
      if (revisions > 0 && unmigrated > 0) {
        findings.push({
          count: unmigrated,
          details: {revisions},
          fix: `Run CKAN's migrate_package_activity.py (ckan/migration/, shipped with 2.9, 2.10 and 2.11: python migrate_package_activity.py -c $CKAN_INI) before upgrading: ${to} no longer ships it, and its migration 107 drops the revision tables, so that history would be lost.`,
          id: 'activity-not-migrated',
          sample: [],
          severity: 'blocker',
          title: `${unmigrated} dataset activities still need the revision tables that ${to} drops (${revisions} revisions)`,
        })
      } else if (revisions > 0) {
        findings.push({
          count: revisions,
          fix: `Nothing to migrate: every dataset activity is in the activity stream. Keep a backup if you want the raw revisions; ${to}'s migration 107 drops them.`,
          id: 'revision-tables-dropped',
          sample: [],
          severity: 'info',
          title: `${revisions} revisions are in the revision tables, which ${to} drops`,
        })
      }
    }
  }
  return findings
}
