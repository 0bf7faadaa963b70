import {join} from 'node:path'

import {EXIT_CODES, MigrateError} from '../errors.js'
import {readFailure, readInputText, SMALL_FILE_LIMIT} from '../fs/input-file.js'

/**
 * Message templates of `deliver`: a folder with `subject.txt`, `body.txt` (the plain-text part) and
 * `body.html` (the HTML part). `{{ name }}` is replaced by a variable; in the HTML part the value is
 * HTML-escaped (line breaks become <br>). An unknown variable is refused when the template is read,
 * so a typo never reaches hundreds of users; `{{ password }}` is refused in the bundle template: the
 * password never travels with the bundle.
 */
export type TemplateKind = 'bundle' | 'password'

export type MessageTemplate = {
  html: string
  kind: TemplateKind
  /** Where it came from: a folder, or "built-in". */
  source: string
  subject: string
  text: string
}

export const TEMPLATE_FILES = {html: 'body.html', subject: 'subject.txt', text: 'body.txt'} as const

const COMMON_VARIABLES = [
  'bundle.file',
  'instructions.7zip',
  'instructions.dcoraid',
  'sender',
  'site.host',
  'site.url',
  'user.email',
  'user.fullname',
  'user.name',
] as const
const PASSWORD_VARIABLES = ['bundle.subject', 'bundle.to', 'password'] as const

export type TemplateVariables = Partial<
  Record<(typeof COMMON_VARIABLES)[number] | (typeof PASSWORD_VARIABLES)[number], string>
>

export function templateVariables(kind: TemplateKind): readonly string[] {
  return kind === 'bundle' ? COMMON_VARIABLES : [...COMMON_VARIABLES, ...PASSWORD_VARIABLES]
}

const PLACEHOLDER = /\{\{\s*([\w.]+)\s*\}\}/g

export const INSTRUCTIONS = {
  '7zip':
    'Without DCOR-Aid: the file is an encrypted ZIP archive (AES-256 or ZipCrypto). Open it with 7-Zip (Windows: right-click, 7-Zip, Extract here; Linux/macOS: 7z x FILE) and type the password when asked. api_key.txt holds your API token; server.cert the server certificate.',
  dcoraid:
    'In DCOR-Aid: in its setup wizard (shown at first start), choose the option that uses an encrypted access token (the "medical" scenario), pick the attached .dcor-access file and type the password. DCOR-Aid then uses your new API token and trusts only the server certificate inside the bundle.',
} as const

const BUILT_IN: Record<TemplateKind, Omit<MessageTemplate, 'kind' | 'source'>> = {
  bundle: {
    html: `<p>Dear {{ user.fullname }},</p>
<p>{{ site.url }} is moving from legacy API keys to API tokens. Attached is your personal access bundle <b>{{ bundle.file }}</b> for the account <b>{{ user.name }}</b>: it holds your new API token and the server's certificate.</p>
<p>The bundle is encrypted. <b>You receive its password separately</b>, through another channel; it is never sent in this mail.</p>
<p>{{ instructions.dcoraid }}</p>
<p>{{ instructions.7zip }}</p>
<p>Please keep the token to yourself. If you did not expect this mail, tell {{ sender }}.</p>
`,
    subject: 'Your new API access for {{ site.host }} ({{ user.name }})',
    text: `Dear {{ user.fullname }},

{{ site.url }} is moving from legacy API keys to API tokens. Attached is your
personal access bundle {{ bundle.file }} for the account {{ user.name }}: it holds
your new API token and the server's certificate.

The bundle is encrypted. You receive its password separately, through another
channel; it is never sent in this mail.

{{ instructions.dcoraid }}

{{ instructions.7zip }}

Please keep the token to yourself. If you did not expect this mail, tell {{ sender }}.
`,
  },
  password: {
    html: `<p>Dear {{ user.fullname }},</p>
<p>the password of your access bundle <b>{{ bundle.file }}</b> for {{ site.host }} (account <b>{{ user.name }}</b>, mailed to {{ bundle.to }} with the subject "{{ bundle.subject }}") is:</p>
<p><code>{{ password }}</code></p>
<p>The dashes are part of the password. Do not forward this mail.</p>
`,
    subject: 'Password of your access bundle for {{ site.host }} ({{ user.name }})',
    text: `Dear {{ user.fullname }},

the password of your access bundle {{ bundle.file }} for {{ site.host }}
(account {{ user.name }}, mailed to {{ bundle.to }} with the subject
"{{ bundle.subject }}") is:

    {{ password }}

The dashes are part of the password. Do not forward this mail.
`,
  },
}

/** The template in `folder` (all three files), or the built-in English one. */
export async function loadTemplate(kind: TemplateKind, folder: string | undefined): Promise<MessageTemplate> {
  const flag = kind === 'bundle' ? '--template' : '--password-template'
  let template: MessageTemplate
  if (folder === undefined) {
    template = {...BUILT_IN[kind], kind, source: 'built-in'}
  } else {
    const read = async (name: string) => {
      try {
        return await readInputText(join(folder, name), {maxBytes: SMALL_FILE_LIMIT})
      } catch (error) {
        throw new MigrateError(`Cannot read ${flag} ${join(folder, name)}: it ${readFailure(error)}`, {
          cause: error,
          exitCode: EXIT_CODES.badInput,
          suggestion: `${flag} is a folder with ${Object.values(TEMPLATE_FILES).join(', ')}.`,
        })
      }
    }
    template = {
      html: await read(TEMPLATE_FILES.html),
      kind,
      source: folder,
      subject: (await read(TEMPLATE_FILES.subject)).trim(),
      text: await read(TEMPLATE_FILES.text),
    }
  }
  checkTemplate(template, flag)
  return template
}

function checkTemplate(template: MessageTemplate, flag: string): void {
  const allowed = new Set(templateVariables(template.kind))
  for (const [part, body] of Object.entries({html: template.html, subject: template.subject, text: template.text})) {
    for (const [, name] of body.matchAll(PLACEHOLDER)) {
      if (name === 'password' && template.kind === 'bundle') {
        throw new MigrateError(`${flag} ${template.source}: the ${part} part uses {{ password }}`, {
          exitCode: EXIT_CODES.badInput,
          suggestion:
            'The password never travels with its bundle: remove it (it goes to the password channel, see --password-template).',
        })
      }
      if (!allowed.has(name!)) {
        throw new MigrateError(`${flag} ${template.source}: unknown variable {{ ${name} }} in the ${part} part`, {
          exitCode: EXIT_CODES.badInput,
          suggestion: `Use only ${[...allowed].map((variable) => `{{ ${variable} }}`).join(', ')}.`,
        })
      }
    }
  }
  if (/[\r\n]/.test(template.subject)) {
    throw new MigrateError(`${flag} ${template.source}: the subject has more than one line`, {
      exitCode: EXIT_CODES.badInput,
      suggestion: `Put the subject on one line in ${TEMPLATE_FILES.subject}.`,
    })
  }
}

export type RenderedParts = {html: string; subject: string; text: string}

export function renderTemplate(template: MessageTemplate, variables: TemplateVariables): RenderedParts {
  const value = (name: string) => (variables as Record<string, string | undefined>)[name] ?? ''
  const plain = (body: string) => body.replaceAll(PLACEHOLDER, (_match, name: string) => value(name))
  return {
    html: template.html.replaceAll(PLACEHOLDER, (_match, name: string) =>
      escapeHtml(value(name)).replaceAll('\n', '<br>\n'),
    ),
    // A variable (a user's full name) must not add a line to the subject header.
    subject: plain(template.subject).replaceAll(/[\r\n]+/g, ' '),
    text: plain(template.text),
  }
}

function escapeHtml(text: string): string {
  return text
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')
    .replaceAll("'", '&#39;')
}
