import type {AuditFinding} from '../audit/audit-finding.js'
import type {AuditResult} from '../audit/audit-result.js'
import type {ServiceCredential} from '../audit/readiness-breakdown.js'
import {describeTarget} from '../site/ckan-version.js'
import {drawReadinessFigures} from './figure-drawer.js'
import {formatCount, formatTime, type Html, html, plural, table} from './html.js'
import {renderPage, tile, writePage} from './page.js'

/** Findings about ckan.ini and CKAN's environment (docs/commands/audit.md, "Configuration"): the settings table. */
const SETTINGS_FINDINGS = new Set([
  'apikey-header-name-set',
  'config-not-checked',
  'cookie-auth-in-api',
  'create-default-api-keys',
  'env-overrides',
  'expire-api-token-enabled',
  'ini-duplicate-keys',
  'jwt-secret-interpolated',
  'jwt-secret-unavailable',
  'jwt-secret-without-prefix',
  'jwt-secrets-differ',
  'jwt-secrets-not-pinned',
  'service-token-is-legacy-key',
  'service-token-missing',
  'tokens-never-expire',
  'validation-token-missing',
])

/**
 * The readiness page (`audit --html`): the verdict and its blockers first, then the figures as
 * charts with their tables, the services, the settings and every other finding. It reads nothing
 * but the audit's own result (what --json prints), so the two can never disagree.
 */
export function renderReadinessPage(
  result: AuditResult,
  figures: Html | '',
  generatedAt = new Date().toISOString(),
): string {
  const {summary, verdict} = result
  const ready = verdict.status === 'READY'
  const blockers = result.findings.filter((finding) => finding.severity === 'blocker')
  const settings = result.findings.filter((finding) => SETTINGS_FINDINGS.has(finding.id))
  const others = result.findings.filter(
    (finding) => finding.severity !== 'blocker' && !SETTINGS_FINDINGS.has(finding.id),
  )
  const body = html` <section class="verdict ${ready ? 'good' : 'bad'}" id="verdict" data-status="${verdict.status}">
      <p class="status">${verdict.status} <small>for ${describeTarget(verdict.target)}</small></p>
      <p>
        ${plural(verdict.blockers, 'blocker')}, ${plural(verdict.warnings, 'warning')},
        ${plural(verdict.infos, 'info', 'infos')}.
        ${ready ? 'Nothing stops the upgrade: go on with the runbook.' : 'Fix the blockers below, then run the audit again.'}
      </p>
    </section>
    <ul class="tiles" id="counts">
      ${tile('users', summary.users.total, `${formatCount(summary.users.active ?? 0)} active, ${formatCount(summary.users.pending ?? 0)} pending, ${formatCount(summary.users.deleted ?? 0)} deleted`)}
      ${tile('sysadmins', summary.users.sysadmins, 'active sysadmins')}
      ${tile('legacy-keys', summary.legacyKeys.total, `legacy API keys (${formatCount(summary.legacyKeys.active ?? 0)} held by active users)`)}
      ${tile('api-tokens', summary.apiTokens.total, `API tokens, held by ${plural(summary.apiTokens.users, 'user')}`)}
      ${tile('never-used', summary.apiTokens.neverUsed, 'API tokens never used')}
    </ul>
    ${blockers.length > 0 ? blockerList(blockers) : ''} ${figures} ${services(result.breakdown?.services ?? [])}
    <section id="settings">
      <h2>Settings</h2>
      ${
        result.ckanIni === null
          ? html`<p class="note">
              No <code>--ckan-ini</code> was given, so only what status_show and the environment tell was checked.
            </p>`
          : html`<p class="note">
              From <code>${result.ckanIni}</code>, with CKAN's environment overrides applied. Values of secrets are
              compared, never shown.
            </p>`
      }
      ${settings.length > 0 ? findingsTable(settings, 'settings findings') : html`<p>No findings about the settings.</p>`}
    </section>
    <section id="findings">
      <h2>Users, tokens and services</h2>
      ${others.length > 0 ? findingsTable(others, 'other findings') : html`<p>No other findings.</p>`}
    </section>
    ${
      result.warnings.length > 0
        ? html`<section id="warnings">
            <h2>Warnings</h2>
            <ul>
              ${result.warnings.map((warning) => html`<li>${warning}</li>`)}
            </ul>
          </section>`
        : ''
    }`
  const version = result.ckan.version ?? 'unknown'
  return renderPage({
    body,
    facts: [
      ['Database', result.database.url],
      ['ckan.ini', result.ckanIni ?? 'not given'],
      ['CKAN schema', `${version} (alembic ${result.ckan.alembicHeads.join(', ') || 'none'})`],
      ...(result.ckan.status ? ([['status_show', result.ckan.status.ckanVersion]] as Array<[string, string]>) : []),
      ['Audited', formatTime(result.breakdown?.now ?? generatedAt)],
    ],
    generatedAt,
    kicker: 'ckan-migrate audit · readiness',
    title: `Readiness for ${describeTarget(result.verdict.target)}`,
  })
}

/**
 * Renders the page and writes it (atomically, 0600). `drawn`: the charts of `result.breakdown`,
 * drawn earlier (the audit has them drawn while its census still runs); drawn here otherwise.
 */
export async function writeReadinessPage(
  path: string,
  result: AuditResult,
  drawn?: Html,
): Promise<{bytes: number; path: string}> {
  const figures = drawn ?? (result.breakdown ? await drawReadinessFigures(result.breakdown) : '')
  return writePage(path, renderReadinessPage(result, figures))
}

function blockerList(blockers: readonly AuditFinding[]): Html {
  return html`<section id="blockers">
    <h2>Blockers</h2>
    <ol class="blockers">
      ${blockers.map(
        (finding) =>
          html`<li data-finding="${finding.id}">
            <div class="title">${finding.title}</div>
            ${sample(finding)}
            <p class="fix"><b>Fix:</b> ${finding.fix}</p>
            <div class="note">
              <span class="id">${finding.id}</span> · ${plural(finding.count, 'affected', 'affected')}
            </div>
          </li>`,
      )}
    </ol>
  </section>`
}

/** Up to SAMPLE_SIZE names, as the audit itself shows them, and how many more. */
function sample(finding: AuditFinding): Html | string {
  if (finding.sample.length === 0) return ''
  const more =
    finding.count > finding.sample.length ? ` … and ${formatCount(finding.count - finding.sample.length)} more` : ''
  return html`<div class="sample">e.g. ${finding.sample.join(', ')}${more}</div>`
}

function findingsTable(findings: readonly AuditFinding[], caption: string): Html {
  return table({
    caption,
    className: 'data findings',
    columns: [
      {title: 'finding', value: (finding: AuditFinding) => html`<span class="id">${finding.id}</span>`},
      {title: 'severity', value: (finding) => html`<span class="sev ${finding.severity}">${finding.severity}</span>`},
      {numeric: true, title: 'count', value: (finding) => formatCount(finding.count)},
      {title: 'what', value: (finding) => html`${finding.title}${sample(finding)}`},
      {title: 'fix', value: (finding) => finding.fix},
    ],
    rows: findings,
  })
}

const CREDENTIAL_LABELS: Record<ServiceCredential['credential'], string> = {
  'legacy-key': 'a legacy key',
  missing: 'nothing',
  token: 'an API token',
  unknown: 'something else',
}

function services(list: readonly ServiceCredential[]): Html | string {
  if (list.length === 0) return ''
  const where = (service: ServiceCredential) =>
    service.source === 'env'
      ? html`environment <code>${service.variable ?? ''}</code> (env file)`
      : service.source === 'ini'
        ? html`ckan.ini <code>${service.configKey}</code>`
        : html`not set (<code>${service.configKey}</code>)`
  const action = (service: ServiceCredential) =>
    service.rewriteConfig === 'writes-token'
      ? html`<span class="sev warning">will change</span> writes the service's own token`
      : service.rewriteConfig === 'keeps'
        ? html`<span class="sev ok">keeps</span> it already holds a token`
        : html`<span class="note">not enabled: left alone</span>`
  return html`<section id="services">
    <h2>Services and their credentials</h2>
    <p class="note">
      What each service's token setting holds (by its shape, never its value), where it comes from, and what
      <code>ckan-migrate rewrite-config</code> will do with it.
    </p>
    ${table({
      caption: 'services',
      className: 'data services',
      columns: [
        {title: 'service', value: (service: ServiceCredential) => service.service},
        {title: 'enabled', value: (service) => (service.enabled ? 'yes' : 'no')},
        {title: 'credential lives in', value: where},
        {title: 'holds', value: (service) => CREDENTIAL_LABELS[service.credential]},
        {title: 'rewrite-config', value: action},
      ],
      rows: list,
    })}
  </section>`
}
