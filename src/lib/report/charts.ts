import * as Plot from './charting-library.js'
import {formatCount, type Html, html, type HtmlInput, table, trusted} from './html.js'

/**
 * Charts for the report pages: static SVG rendered when the page is written, by Observable Plot
 * on linkedom's DOM (no browser, no script in the page). Every chart comes with a table of the
 * numbers it draws, for screen readers, for copying, and for a page printed in black and white.
 */

/** Colours that read on white and in grey print; named by what they mean, not by hue. */
export const TONES = {
  bad: '#c2410c',
  good: '#15803d',
  muted: '#94a3b8',
  neutral: '#2563eb',
  warn: '#ca8a04',
} as const

export type Tone = keyof typeof TONES

export type Bar = {label: string; tone: Tone; value: number}

const WIDTH = 560

/** An empty HTML document with its root element, made without parsing any markup (Plot's elements are created, never parsed). */
function newDocument(): Document {
  const document = new Plot.DOMParser().parseFromString('', 'text/html') as unknown as Document
  document.appendChild(document.createElement('html'))
  return document
}

function svgOf(node: unknown): Html {
  const element = node as {outerHTML: string}
  // Plot's own stylesheet and class names are deterministic.
  return trusted(element.outerHTML)
}

/** A figure: title, optional note, the chart, and its table. `id` becomes data-chart, for tests and links. */
function figure(options: {chart: Html; id: string; note?: HtmlInput; table: Html; title: string}): Html {
  return html`<figure class="chart" data-chart="${options.id}" id="chart-${options.id}">
    <figcaption>
      <h3>${options.title}</h3>
      ${options.note ? html`<p class="note">${options.note}</p>` : ''}
    </figcaption>
    <div class="chart-body">
      <div class="plot" aria-hidden="true">${options.chart}</div>
      ${options.table}
    </div>
  </figure>`
}

/** Horizontal bars, one per category in the order given, each labelled with its count. */
export function barChart(options: {
  id: string
  note?: HtmlInput
  rows: readonly Bar[]
  title: string
  unit: string
}): Html {
  const rows = options.rows.map((row) => ({...row, color: TONES[row.tone], text: formatCount(row.value)}))
  const max = Math.max(1, ...rows.map((row) => row.value))
  const svg = Plot.plot({
    color: {type: 'identity'},
    document: newDocument(),
    height: 28 * rows.length + 36,
    marginLeft: 150,
    marginRight: 56,
    marks: [
      Plot.barX(rows, {fill: 'color', insetBottom: 3, insetTop: 3, x: 'value', y: 'label'}),
      Plot.text(rows, {dx: 6, fill: '#1e293b', text: 'text', textAnchor: 'start', x: 'value', y: 'label'}),
      Plot.ruleX([0], {stroke: '#475569'}),
    ],
    style: {fontSize: '12px'},
    width: WIDTH,
    x: {
      domain: [0, max],
      grid: true,
      label: options.unit,
      nice: true,
      tickFormat: (value: number) => formatCount(value),
    },
    y: {domain: rows.map((row) => row.label), label: null, tickSize: 0},
  })
  const data = table({
    caption: options.title,
    columns: [
      {title: 'what', value: (row: Bar) => row.label},
      {numeric: true, title: options.unit, value: (row: Bar) => formatCount(row.value)},
    ],
    rows: options.rows,
  })
  return figure({chart: svgOf(svg), id: options.id, note: options.note, table: data, title: options.title})
}

export type TimeBin = {end: Date; start: Date; values: Record<string, number>}
export type Series = {key: string; label: string; tone: Tone}

/** Stacked columns over time, one per bin; the table lists each bin's counts. */
export function timeChart(options: {
  bins: readonly TimeBin[]
  id: string
  note?: HtmlInput
  series: readonly Series[]
  title: string
  unit: string
}): Html {
  const stacked = options.bins.flatMap((bin) =>
    options.series.map((series) => ({
      color: TONES[series.tone],
      end: bin.end,
      label: series.label,
      start: bin.start,
      value: bin.values[series.key] ?? 0,
    })),
  )
  const svg = Plot.plot({
    color: {
      domain: options.series.map((series) => series.label),
      legend: true,
      range: options.series.map((series) => TONES[series.tone]),
      type: 'categorical',
    },
    document: newDocument(),
    height: 220,
    marginLeft: 56,
    marks: [
      Plot.rectY(
        stacked,
        Plot.stackY({fill: 'label', insetLeft: 0.5, insetRight: 0.5, order: null, x1: 'start', x2: 'end', y: 'value'}),
      ),
      Plot.ruleY([0], {stroke: '#475569'}),
    ],
    style: {fontSize: '12px'},
    width: WIDTH,
    marginRight: 28,
    x: {label: null, tickFormat: timeTicks(options.bins), ticks: tickTimes(options.bins), type: 'utc'},
    y: {grid: true, label: options.unit, tickFormat: (value: number) => formatCount(value)},
  })
  // With a legend, Plot wraps the SVG and its legend in a <figure> of its own.
  const chart = svgOf(svg)
  const data = table({
    caption: options.title,
    columns: [
      {title: 'from (UTC)', value: (bin: TimeBin) => binLabel(bin)},
      ...options.series.map((series) => ({
        numeric: true,
        title: series.label,
        value: (bin: TimeBin) => formatCount(bin.values[series.key] ?? 0),
      })),
    ],
    rows: options.bins,
  })
  return figure({chart, id: options.id, note: options.note, table: data, title: options.title})
}

/** Tick labels for a time axis: clock time within a day (with tenths when the bins are short), dates beyond. */
function timeTicks(bins: readonly TimeBin[]): (time: Date) => string {
  const span = bins.length > 0 ? bins.at(-1)!.end.getTime() - bins[0]!.start.getTime() : 0
  const step = bins.length > 0 ? bins[0]!.end.getTime() - bins[0]!.start.getTime() : 0
  if (span > 86_400_000) return (time) => time.toISOString().slice(5, 16).replace('T', ' ')
  if (step < 1000) return (time) => time.toISOString().slice(11, 21)
  return (time) => time.toISOString().slice(11, 19)
}

/** At most seven bin boundaries, evenly spaced, as the time axis's ticks (so no two ticks read the same). */
function tickTimes(bins: readonly TimeBin[]): Date[] {
  const edges = [...bins.map((bin) => bin.start), ...(bins.length > 0 ? [bins.at(-1)!.end] : [])]
  const every = Math.max(1, Math.ceil((edges.length - 1) / 6))
  return edges.filter((_, index) => index % every === 0)
}

function binLabel(bin: TimeBin): string {
  const step = bin.end.getTime() - bin.start.getTime()
  return bin.start
    .toISOString()
    .slice(0, step < 1000 ? 21 : 19)
    .replace('T', ' ')
}
