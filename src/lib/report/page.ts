import {Buffer} from 'node:buffer'
import {stat} from 'node:fs/promises'
import {dirname, resolve} from 'node:path'

import {EXIT_CODES, MigrateError} from '../errors.js'

import {ensureFolder, writeFileAtomically} from '../fs/secret-file.js'
import {formatCount, formatTime, type Html, html, trusted} from './html.js'

/**
 * The page every report shares: one self-contained HTML file. No script, no remote anything: the
 * Content-Security-Policy forbids every load but inline styles and data: images, so a page opened
 * from a mail attachment cannot call home even if a name in it tried. A print stylesheet keeps
 * it readable as a PDF.
 */
export const CONTENT_SECURITY_POLICY =
  "default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src 'none'; script-src 'none'; connect-src 'none'; form-action 'none'; base-uri 'none'"

const STYLE = `
:root { color-scheme: light; --ink: #0f172a; --soft: #475569; --line: #e2e8f0; --paper: #ffffff; --wash: #f8fafc;
  --good: #15803d; --good-wash: #f0fdf4; --bad: #b91c1c; --bad-wash: #fef2f2; --warn: #a16207; --warn-wash: #fefce8; --accent: #2563eb; }
* { box-sizing: border-box; }
html { background: var(--wash); }
body { margin: 0 auto; max-width: 1080px; padding: 28px 32px 48px; color: var(--ink); background: var(--paper);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
header.page { border-bottom: 1px solid var(--line); padding-bottom: 14px; margin-bottom: 20px; }
header.page .kicker { font-size: 12px; letter-spacing: .08em; text-transform: uppercase; color: var(--soft); margin: 0; }
header.page h1 { font-size: 26px; line-height: 1.2; margin: 4px 0 6px; }
header.page dl { display: flex; flex-wrap: wrap; gap: 4px 22px; margin: 0; font-size: 13px; color: var(--soft); }
header.page dl div { display: flex; gap: 6px; }
header.page dt { font-weight: 600; }
header.page dd { margin: 0; overflow-wrap: anywhere; }
.verdict { border-radius: 10px; padding: 18px 22px; margin: 0 0 20px; border: 1px solid; }
.verdict.good { background: var(--good-wash); border-color: #bbf7d0; }
.verdict.bad { background: var(--bad-wash); border-color: #fecaca; }
.verdict.warn { background: var(--warn-wash); border-color: #fde68a; }
.verdict .status { font-size: 34px; font-weight: 800; letter-spacing: .01em; margin: 0; line-height: 1.1; }
.verdict.good .status { color: var(--good); } .verdict.bad .status { color: var(--bad); } .verdict.warn .status { color: var(--warn); }
.verdict .status small { font-size: 18px; font-weight: 600; color: var(--ink); margin-left: 8px; }
.verdict p { margin: 8px 0 0; }
.tiles { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 12px; margin: 0 0 24px; padding: 0; list-style: none; }
.tiles li { border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; }
.tiles .figure { display: block; font-size: 24px; font-weight: 700; font-variant-numeric: tabular-nums; }
.tiles .label { color: var(--soft); font-size: 13px; }
section { margin: 28px 0; }
h2 { font-size: 19px; margin: 0 0 10px; padding-bottom: 4px; border-bottom: 2px solid var(--ink); }
h3 { font-size: 15px; margin: 0; }
.note { color: var(--soft); font-size: 13px; margin: 2px 0 0; }
ol.blockers { padding-left: 22px; margin: 0; }
ol.blockers li { margin: 0 0 12px; }
ol.blockers .title { font-weight: 600; }
ol.blockers .fix { margin: 2px 0 0; }
ol.blockers .fix b { color: var(--bad); }
.sample { color: var(--soft); font-size: 13px; overflow-wrap: anywhere; }
table.findings .id { white-space: nowrap; }
table.findings td:last-child { min-width: 16em; }
code, .id { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px; }
figure.chart { margin: 0 0 22px; padding: 14px 16px; border: 1px solid var(--line); border-radius: 8px; break-inside: avoid; }
figure.chart figcaption { margin-bottom: 8px; }
.chart-body { display: grid; grid-template-columns: minmax(0, 3fr) minmax(200px, 2fr); gap: 18px; align-items: start; }
.plot svg { max-width: 100%; height: auto; }
.plot figure { margin: 0; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
table caption { text-align: left; font-weight: 600; font-size: 12px; color: var(--soft); padding-bottom: 4px; }
table caption { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
thead th { font-size: 12px; color: var(--soft); font-weight: 600; border-bottom: 1px solid #cbd5e1; }
tbody th { font-weight: 500; }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.sev { display: inline-block; font-size: 11px; font-weight: 700; letter-spacing: .04em; padding: 1px 7px; border-radius: 999px; }
.sev.blocker { background: var(--bad-wash); color: var(--bad); } .sev.warning { background: var(--warn-wash); color: var(--warn); }
.sev.info { background: #eff6ff; color: var(--accent); } .sev.ok { background: var(--good-wash); color: var(--good); }
footer { margin-top: 36px; padding-top: 10px; border-top: 1px solid var(--line); color: var(--soft); font-size: 12px; }
@media (max-width: 760px) { body { padding: 16px; } .chart-body { grid-template-columns: 1fr; } }
@media print {
  @page { size: A4; margin: 14mm; }
  html, body { background: #fff; }
  body { max-width: none; padding: 0; font-size: 10.5pt; }
  .verdict, .sev, .plot svg { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  section, figure.chart, table, ol.blockers li { break-inside: avoid; }
  h2, h3 { break-after: avoid; }
  .chart-body { grid-template-columns: 3fr 2fr; }
  a { color: inherit; text-decoration: none; }
}
`

export type PageOptions = {
  body: Html
  /** Facts shown under the title: site, database, time, … */
  facts: Array<[string, string]>
  kicker: string
  title: string
}

/** The whole document. `generatedAt` is in the footer; the tool's name and version with it. */
export function renderPage(options: PageOptions & {generatedAt: string}): string {
  return `<!doctype html>\n${html`<html lang="en">
    <head>
      <meta charset="utf-8" />
      <meta http-equiv="Content-Security-Policy" content="${CONTENT_SECURITY_POLICY}" />
      <meta name="viewport" content="width=device-width, initial-scale=1" />
      <meta name="referrer" content="no-referrer" />
      <meta name="generator" content="ckan-migrate" />
      <title>${options.title}</title>
      <style>
        ${trusted(STYLE)}
      </style>
    </head>
    <body>
      <header class="page">
        <p class="kicker">${options.kicker}</p>
        <h1>${options.title}</h1>
        <dl>
          ${options.facts.map(
            ([term, value]) =>
              html`<div>
                <dt>${term}</dt>
                <dd>${value}</dd>
              </div>`,
          )}
        </dl>
      </header>
      <main>${options.body}</main>
      <footer>
        Written by ckan-migrate at ${formatTime(options.generatedAt)}. One self-contained file: no script, nothing
        loaded from elsewhere. The figures are the same command's <code>--json</code> result.
      </footer>
    </body>
  </html>`}\n`
}

/**
 * Writes a page atomically (0600, like every report: it names users in its samples). Its folder is
 * made when missing, never changed when it exists.
 */
export async function writePage(path: string, text: string): Promise<{bytes: number; path: string}> {
  const existing = await stat(path).catch(() => undefined)
  if (existing?.isDirectory()) {
    throw new MigrateError(`--html ${path} is a folder, not a file`, {
      exitCode: EXIT_CODES.badInput,
      suggestion: 'Pass the name of the HTML file to write, e.g. --html readiness.html.',
    })
  }
  await ensureFolder(dirname(path))
  await writeFileAtomically(path, text, 0o600)
  return {bytes: Buffer.byteLength(text), path: resolve(path)}
}

/** A headline figure; `data-count` names it (tests read it). */
export function tile(id: string, value: number, label: string): Html {
  return html`<li data-count="${id}">
    <span class="figure">${formatCount(value)}</span><span class="label">${label}</span>
  </li>`
}
