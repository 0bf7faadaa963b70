import type {AuditBreakdown} from '../audit/readiness-breakdown.js'
import {type Bar, barChart, type Tone} from './charts.js'
import {formatTime, type Html, html, plural} from './html.js'

/**
 * The readiness page's charts (docs/commands/audit.md, "The readiness page"), apart from the page
 * so that writing the page never loads the charting library: they are drawn by figure-drawer.ts,
 * on its thread when it could start one.
 */

const ACTIVITY_LABELS = {
  days30: 'in the last 30 days',
  days90: '31–90 days ago',
  days365: '91–365 days ago',
  older: 'more than a year ago',
  never: 'nothing recorded',
} as const

const EXPIRY_LABELS = {
  expired: 'expired',
  days7: 'within 7 days',
  days30: 'in 8–30 days',
  later: 'later',
  never: 'never',
} as const

/** One bar per bucket, in the labels' order. */
function bucketBars<Key extends string>(
  labels: Record<Key, string>,
  counts: Readonly<Record<Key, number>>,
  tone: (key: Key) => Tone,
): Bar[] {
  return (Object.keys(labels) as Key[]).map((key) => ({label: labels[key], tone: tone(key), value: counts[key]}))
}

/** The charts of the breakdown, with their tables: a function of the breakdown alone. */
export function renderFigures(breakdown: AuditBreakdown): Html {
  const credentialBars = (counts: typeof breakdown.credentials.people) => [
    {label: 'legacy key only', tone: 'bad' as const, value: counts.keyOnly},
    {label: 'key and token', tone: 'warn' as const, value: counts.both},
    {label: 'token only', tone: 'good' as const, value: counts.tokenOnly},
    {label: 'neither', tone: 'muted' as const, value: counts.neither},
  ]
  const {buckets, basis} = breakdown.keyHolderActivity
  const expiry = breakdown.tokenExpiry
  return html`<section id="figures">
    <h2>Who holds what</h2>
    ${barChart({
      id: 'credentials-people',
      note: 'Active users, sysadmins and the site user apart. Users with a legacy key only lose API access on 2.10 unless they get a token.',
      rows: credentialBars(breakdown.credentials.people),
      title: 'Users by credential',
      unit: 'users',
    })}
    ${barChart({
      id: 'credentials-sysadmins',
      note: 'Active sysadmins (the site user apart): a sysadmin key is full control of the site on 2.9.',
      rows: credentialBars(breakdown.credentials.sysadmins),
      title: 'Sysadmins by credential',
      unit: 'sysadmins',
    })}
    ${barChart({
      id: 'key-holder-activity',
      note:
        basis.length > 0
          ? html`Active legacy-key holders by their latest sign of life. CKAN records no use of a legacy key; this is
            the newest of ${basis.join('; ')}.`
          : 'CKAN records no use of a legacy key, and this database has nothing else to go by.',
      rows: bucketBars(ACTIVITY_LABELS, buckets, (key) =>
        key === 'days30' ? 'bad' : key === 'days90' ? 'warn' : key === 'never' ? 'muted' : 'neutral',
      ),
      title: 'Legacy-key holders by last sign of life',
      unit: 'users',
    })}
    ${barChart({
      id: 'token-expiry',
      note: html`All ${plural(expiry.total, 'API token')}, by the expiry the expire_api_token plugin stored (tokens made
      without it never expire). Measured at ${formatTime(breakdown.now)}.`,
      rows: bucketBars<keyof typeof EXPIRY_LABELS>(EXPIRY_LABELS, expiry, (key) =>
        key === 'expired' ? 'muted' : key === 'days7' ? 'bad' : key === 'days30' ? 'warn' : 'good',
      ),
      title: 'API tokens by expiry',
      unit: 'tokens',
    })}
  </section>`
}
