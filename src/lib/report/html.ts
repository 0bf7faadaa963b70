/**
 * The smallest HTML toolkit the report pages need: escaping, tables, and a tagged template that
 * escapes every interpolated value unless it is already markup (Html). Names come from the
 * database and may hold anything (<script>, quotes, control characters): they only ever reach a
 * page through escapeHtml.
 */
export class Html {
  readonly text: string
  constructor(text: string) {
    this.text = text
  }
  toString(): string {
    return this.text
  }
}

export type HtmlInput = Html | HtmlInput[] | null | number | string | undefined | false

const ESCAPES: Record<string, string> = {'"': '&quot;', '&': '&amp;', "'": '&#39;', '<': '&lt;', '>': '&gt;'}

/** Escapes text for an element's content or a quoted attribute; control characters are shown as \xNN. */
export function escapeHtml(text: string): string {
  return (
    text
      .replace(/["&'<>]/g, (character) => ESCAPES[character]!)
      // eslint-disable-next-line no-control-regex
      .replace(/[\u0000-\u0008\u000B-\u001F\u007F-\u009F]/g, (character) => {
        return `\\x${character.codePointAt(0)!.toString(16).padStart(2, '0')}`
      })
  )
}

function render(value: HtmlInput): string {
  if (value === null || value === undefined || value === false) return ''
  if (value instanceof Html) return value.text
  if (Array.isArray(value)) return value.map((item) => render(item)).join('')
  return escapeHtml(String(value))
}

/** html`<p>${name}</p>`: every value escaped, Html and arrays of it kept as markup. */
export function html(strings: TemplateStringsArray, ...values: HtmlInput[]): Html {
  let text = strings[0]!
  for (let index = 0; index < values.length; index += 1) text += render(values[index]) + strings[index + 1]!
  return new Html(text)
}

/** Markup we made ourselves (the charting library's SVG): never text from the data. */
export function trusted(text: string): Html {
  return new Html(text)
}

export type TableColumn<Row> = {
  /** Right-aligned, tabular figures. */
  numeric?: boolean
  title: string
  value: (row: Row) => HtmlInput
}

/** A data table; `caption` names it for screen readers. */
export function table<Row>(options: {
  caption: string
  className?: string
  columns: ReadonlyArray<TableColumn<Row>>
  rows: readonly Row[]
}): Html {
  const {caption, columns, rows} = options
  return html`<table class="${options.className ?? 'data'}">
    <caption>
      ${caption}
    </caption>
    <thead>
      <tr>
        ${columns.map((column) => html`<th scope="col" ${column.numeric ? trusted(' class="num"') : ''}>${column.title}</th>`)}
      </tr>
    </thead>
    <tbody>
      ${rows.map(
        (row) =>
          html`<tr>
            ${columns.map((column, index) => {
              const cell = column.value(row)
              const attributes = trusted(column.numeric ? ' class="num"' : '')
              return index === 0 && !column.numeric
                ? html`<th scope="row" ${attributes}>${cell}</th>`
                : html`<td${attributes}>${cell}</td>`
            })}
          </tr> `,
      )}
    </tbody>
  </table>`
}

/** 12 345 → "12,345" (the same in every locale, so tests and mail clients agree). */
export function formatCount(value: number): string {
  return value.toLocaleString('en-US')
}

export function plural(count: number, word: string, many = `${word}s`): string {
  return `${formatCount(count)} ${count === 1 ? word : many}`
}

/** An ISO 8601 time as "2026-05-04 21:07:31 UTC" (null: "–"). */
export function formatTime(iso: null | string | undefined): string {
  if (!iso) return '–'
  const time = new Date(iso)
  return Number.isNaN(time.getTime()) ? iso : `${time.toISOString().slice(0, 19).replace('T', ' ')} UTC`
}
