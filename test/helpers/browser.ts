import {existsSync} from 'node:fs'
import {mkdir, mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {pathToFileURL} from 'node:url'
import {chromium} from 'playwright-core'

/** Debian's chromium (.ci/run installs it); never a downloaded browser. */
export const CHROMIUM = process.env.CKAN_MIGRATE_CHROMIUM ?? '/usr/bin/chromium'

/**
 * Whether the browser tests run: always in CI (CI=true), where a missing chromium must fail the
 * suite loudly; elsewhere only when chromium is installed.
 */
export const BROWSER_TESTS = process.env.CI === 'true' || existsSync(CHROMIUM)

/** Screenshots are kept (not removed with the test's other files): CI keeps them as artifacts. */
export const SCREENSHOT_DIR = join(tmpdir(), 'ckan-migrate-report-screenshots')

export type LoadedPage = {
  /** Console messages (CSP violations show up here). */
  console: string[]
  /** Runs a query against the rendered DOM. */
  evaluate: <T>(fn: () => T) => Promise<T>
  /** Every request the page made, by URL: only the page's own file:// URL is allowed. */
  requests: string[]
  screenshot: (name: string) => Promise<string>
}

/**
 * Opens `file` from file:// in headless Chromium with JavaScript off (the page must not need it)
 * and, unless `network: true`, the network off. Calls `use` with the loaded page, then closes
 * the browser.
 */
export async function withPage<T>(
  file: string,
  use: (page: LoadedPage) => Promise<T>,
  options: {network?: boolean} = {},
): Promise<T> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `The browser tests need Debian's chromium at ${CHROMIUM} (apt-get install chromium; .ci/run installs it)`,
    )
  }
  const profile = await mkdtemp(join(tmpdir(), 'ckan-migrate-chromium-'))
  const context = await chromium.launchPersistentContext(profile, {
    args: [
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-dev-shm-usage',
    ],
    chromiumSandbox: false,
    executablePath: CHROMIUM,
    headless: true,
    javaScriptEnabled: false,
    offline: options.network !== true,
    viewport: {height: 1000, width: 1200},
  })
  try {
    const page = context.pages()[0] ?? (await context.newPage())
    const requests: string[] = []
    const messages: string[] = []
    context.on('request', (request) => requests.push(request.url()))
    page.on('console', (message) => messages.push(message.text()))
    await page.goto(pathToFileURL(file).href, {waitUntil: 'load'})
    return await use({
      console: messages,
      evaluate: (fn) => page.evaluate(fn),
      requests,
      async screenshot(name) {
        await mkdir(SCREENSHOT_DIR, {recursive: true})
        const path = join(SCREENSHOT_DIR, name)
        await page.screenshot({fullPage: true, path})
        return path
      },
    })
  } finally {
    await context.close()
    await rm(profile, {force: true, recursive: true})
  }
}

/** What a report page shows, read from the rendered DOM. */
export type ReportDom = {
  charts: Array<{
    hasSvg: boolean
    /** The chart's table: header cells, then each row's cells (as shown). */
    header: string[]
    id: string
    rows: string[][]
    tables: number
  }>
  /** data-count tiles: id → the number shown. */
  counts: Record<string, number>
  scripts: number
  /** data-status of the verdict box, and the headline shown. */
  status: string
  statusText: string
  text: string
}

export async function readReportDom(page: LoadedPage): Promise<ReportDom> {
  return page.evaluate(() => {
    const cells = (row: Element) => [...row.querySelectorAll('th, td')].map((cell) => (cell.textContent ?? '').trim())
    const verdict = document.querySelector('#verdict')
    return {
      charts: [...document.querySelectorAll('figure.chart')].map((figure) => ({
        hasSvg: figure.querySelector('.plot svg') !== null,
        header: cells(figure.querySelector('table thead tr') ?? document.createElement('tr')),
        id: figure.getAttribute('data-chart') ?? '',
        rows: [...figure.querySelectorAll('table tbody tr')].map((row) => cells(row)),
        tables: figure.querySelectorAll('table').length,
      })),
      counts: Object.fromEntries(
        [...document.querySelectorAll('[data-count]')].map((tile) => [
          tile.getAttribute('data-count'),
          Number((tile.querySelector('.figure')?.textContent ?? '').replaceAll(',', '')),
        ]),
      ),
      scripts: document.querySelectorAll('script').length,
      status: verdict?.getAttribute('data-status') ?? '',
      statusText: (verdict?.querySelector('.status')?.textContent ?? '').trim(),
      text: document.body.innerText,
    }
  })
}

/** A chart's table as {label: number}, from its first two columns. */
export function chartNumbers(dom: ReportDom, id: string): Record<string, number> {
  const chart = dom.charts.find((candidate) => candidate.id === id)
  if (!chart) throw new Error(`no chart ${id} on the page (have ${dom.charts.map((item) => item.id).join(', ')})`)
  return Object.fromEntries(chart.rows.map((row) => [row[0]!, Number(row[1]!.replaceAll(',', ''))]))
}
