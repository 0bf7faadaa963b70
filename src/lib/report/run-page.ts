import type {RunReportResult} from './run-report.js'
import {barChart, timeChart} from './charts.js'
import {formatCount, formatTime, html, plural, table} from './html.js'
import {renderPage, tile, writePage} from './page.js'

const STATE_TEXT: Record<RunReportResult['state'], {headline: string; tone: 'bad' | 'good' | 'warn'}> = {
  empty: {headline: 'NOTHING RUN YET', tone: 'warn'},
  finished: {headline: 'FINISHED', tone: 'good'},
  running: {headline: 'RUNNING', tone: 'warn'},
  unfinished: {headline: 'UNFINISHED', tone: 'bad'},
}

/**
 * The run's page (`report RUN_DIR --html FILE`): its state first (and, for a folder a crash left
 * half done, what is unfinished and the command that resumes it), then tokens issued over time,
 * verify results, services, bundles and the commands run. It reads nothing but the report's own
 * result (what --json prints).
 */
export function renderRunPage(report: RunReportResult, generatedAt = new Date().toISOString()): string {
  const state = STATE_TEXT[report.state]
  const {tokens, verify} = report
  const skippedTotal = Object.values(tokens.skipped).reduce((sum, count) => sum + count, 0)
  const body = html` <section class="verdict ${state.tone}" id="verdict" data-status="${report.state}">
      <p class="status">${state.headline} <small>run ${report.runId}</small></p>
      ${
        report.unfinished.length > 0
          ? report.unfinished.map(
              (command) =>
                html`<div class="unfinished" data-unfinished="${command.command}">
                  <p>${command.detail}</p>
                  <p><b>Resume with:</b> <code>${command.resume}</code></p>
                </div>`,
            )
          : html`<p>
              ${report.state === 'empty' ? 'No command has written to this run folder yet.' : `Every command that started in this run folder finished (${plural(report.commands.length, 'command run')}).`}
            </p>`
      }
    </section>
    <ul class="tiles" id="counts">
      ${tile('tokens-issued', tokens.issued, `tokens issued, for ${plural(tokens.users, 'user')}`)}
      ${tile('retries', tokens.retries, 'creates retried')}
      ${tile('unknown-outcomes', tokens.unknownOutcomes.settled, `unknown outcomes reconciled (${formatCount(tokens.unknownOutcomes.orphansRevoked)} orphan tokens revoked)`)}
      ${tile('users-failed', tokens.usersFailed, 'users still without a token after failing')}
      ${tile('verified-ok', verify.ok, `of ${plural(verify.checked, 'token')} verified working`)}
      ${tile('bundles', report.bundles.files, 'access bundles written')}
    </ul>
    <section id="issuance">
      <h2>Tokens issued</h2>
      ${
        tokens.timeline.length > 0
          ? timeChart({
              bins: tokens.timeline.map((bin) => ({
                end: new Date(bin.end),
                start: new Date(bin.start),
                values: {failed: bin.failed, issued: bin.issued, retries: bin.retries},
              })),
              id: 'tokens-over-time',
              note: html`${plural(tokens.issued, 'token')} from ${formatTime(tokens.firstAt)} to
              ${formatTime(tokens.lastAt)}${tokens.perMinute === null ? '' : html`: ${formatCount(tokens.perMinute)} per minute over that span (pauses between runs included)`}.
              Each column is one interval; retries and failures are counted when they happened.`,
              series: [
                {key: 'issued', label: 'issued', tone: 'good'},
                {key: 'retries', label: 'retried', tone: 'warn'},
                {key: 'failed', label: 'failed', tone: 'bad'},
              ],
              title: 'Tokens issued over time',
              unit: 'events',
            })
          : html`<p>No token has been issued in this run yet.</p>`
      }
      ${barChart({
        id: 'user-outcomes',
        note: `Every user issue-tokens selected or skipped, by where they stand now. Skipped: ${
          Object.entries(tokens.skipped)
            .map(([reason, count]) => `${formatCount(count)} ${reason}`)
            .join(', ') || 'none'
        }.`,
        rows: [
          {label: 'have a token', tone: 'good', value: tokens.users},
          {label: 'failed, no token', tone: 'bad', value: tokens.usersFailed},
          {label: 'skipped', tone: 'muted', value: skippedTotal},
        ],
        title: 'Users by outcome',
        unit: 'users',
      })}
    </section>
    <section id="verify">
      <h2>Verify</h2>
      ${
        verify.checked > 0
          ? barChart({
              id: 'verify-results',
              note: `The latest check of each token (last at ${formatTime(verify.lastAt)}): a token works when CKAN accepts it alone.`,
              rows: [
                {label: 'works', tone: 'good', value: verify.ok},
                ...Object.entries(verify.byStatus).map(([status, count]) => ({
                  label: `refused (${status})`,
                  tone: 'bad' as const,
                  value: count,
                })),
              ],
              title: 'Verify results',
              unit: 'tokens',
            })
          : html`<p>verify has not checked any token of this run yet.</p>`
      }
    </section>
    <section id="services">
      <h2>Services and configuration</h2>
      ${
        report.serviceTokens.length > 0
          ? table({
              caption: 'service tokens',
              columns: [
                {title: 'service', value: (token: RunReportResult['serviceTokens'][number]) => token.service},
                {title: 'token of user', value: (token) => token.userName},
                {title: 'made at', value: (token) => formatTime(token.createdAt)},
                {title: 'state', value: (token) => (token.revoked ? 'revoked' : 'in use')},
              ],
              rows: report.serviceTokens,
            })
          : html`<p>rewrite-config has made no service token in this run.</p>`
      }
      ${
        report.configs.length > 0
          ? table({
              caption: 'files rewritten',
              columns: [
                {
                  title: 'file',
                  value: (config: RunReportResult['configs'][number]) => html`<code>${config.configPath}</code>`,
                },
                {title: 'settings written', value: (config) => html`<code>${config.keys.join(', ')}</code>`},
                {
                  title: 'backup',
                  value: (config) => (config.backupPath ? html`<code>${config.backupPath}</code>` : 'none'),
                },
                {title: 'at', value: (config) => formatTime(config.at)},
              ],
              rows: report.configs,
            })
          : html`<p>No configuration file was rewritten in this run.</p>`
      }
    </section>
    <section id="bundles">
      <h2>Bundles</h2>
      <p>
        ${plural(report.bundles.files, 'access bundle')} in
        <code>${report.bundles.folder}</code
        >${report.bundles.passwordsFile ? ', with passwords.csv beside them (send the passwords through another channel)' : ''}.
        ${report.bundles.written === null ? '' : `The last bundle run wrote ${formatCount(report.bundles.written)} and kept ${formatCount(report.bundles.kept ?? 0)}.`}
      </p>
    </section>
    <section id="commands">
      <h2>Commands run</h2>
      ${
        report.commands.length > 0
          ? table({
              caption: 'commands run',
              columns: [
                {title: 'command', value: (command: RunReportResult['commands'][number]) => command.command},
                {title: 'started', value: (command) => formatTime(command.startedAt)},
                {
                  title: 'finished',
                  value: (command) =>
                    (command.finishedAt ? formatTime(command.finishedAt) : null) ??
                    html`<span class="sev blocker">unfinished</span>`,
                },
                {
                  title: 'summary',
                  value: (command) =>
                    command.summary
                      ? Object.entries(command.summary)
                          .map(([name, count]) => `${name} ${formatCount(count)}`)
                          .join(', ')
                      : '',
                },
              ],
              rows: report.commands,
            })
          : html`<p>None yet.</p>`
      }
      ${report.keysPurged > 0 ? html`<p>purge-keys cleared ${plural(report.keysPurged, 'legacy key')}.</p>` : ''}
    </section>`
  return renderPage({
    body,
    facts: [
      ['Site', report.site.ckanUrl],
      ['Run', report.runId],
      ['Started', formatTime(report.createdAt)],
      ['Run folder', report.runFolder],
    ],
    generatedAt,
    kicker: 'ckan-migrate report · the run',
    title: `Migration run ${report.runId}`,
  })
}

/** Renders the page and writes it (atomically, 0600). */
export async function writeRunPage(path: string, report: RunReportResult): Promise<{bytes: number; path: string}> {
  return writePage(path, renderRunPage(report))
}
