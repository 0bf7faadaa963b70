import {fingerprintOf} from '../secret.js'

/**
 * Hides secret values in ckan.ini and env-file lines before they are shown (dry-run diffs):
 * any setting whose name says it holds a secret (token, secret, pass, pwd, key, credential)
 * shows `***(fingerprint)` instead of its value, and passwords inside URLs become `***`.
 * Commented-out settings are redacted too. Over-redacting is fine; under-redacting is a leak.
 */
const SECRET_NAME = /secret|token|pass|pwd|apikey|api_key|private|credential|_key\b|__key\b/i
const NOT_SECRET = /(header_name|nbytes|algorithm|lifetime|create_default_api_keys|_url|_path)$/i
const SETTING = /^(\s*(?:[#;]+\s*)?(?:export\s+)?)([^:=\s][^:=]*?)(\s*[:=]\s*)(.*)$/
/** scheme://user:PASSWORD@ up to the last "@" of the line (SQLAlchemy lets a password hold "/", "?", "#", spaces). */
const URL_PASSWORD = /(\w[\w+.-]*:\/\/[^\s:/@]*:).*@/g
/** A libpq password given as a query parameter. */
const QUERY_PASSWORD = /([?&](?:ssl)?password=)[^&\s]*/gi

/** Placeholder values stand for tokens a dry run would create; they are shown as such. */
export const NEW_TOKEN_PLACEHOLDER = 'ckan-migrate-new-token-for-'

export function isSecretSettingName(name: string): boolean {
  return SECRET_NAME.test(name) && !NOT_SECRET.test(name.trim())
}

export function redactValue(value: string): string {
  const quoteless = value.replace(/^["']|["']$/g, '')
  if (quoteless.includes(NEW_TOKEN_PLACEHOLDER))
    return `***(new token for ${quoteless.split(NEW_TOKEN_PLACEHOLDER)[1]})`
  return `***(${fingerprintOf(quoteless)})`
}

export function redactConfigLine(line: string): string {
  const match = SETTING.exec(line)
  if (match && isSecretSettingName(match[2]!) && match[4]!.trim() !== '')
    return `${match[1]}${match[2]}${match[3]}${redactValue(match[4]!.trim())}`
  return line.replaceAll(URL_PASSWORD, '$1***@').replaceAll(QUERY_PASSWORD, '$1***')
}

/**
 * A line redactor for a diff between two versions of one file. Besides redactConfigLine, it hides
 * the continuation lines (indented lines after a setting, which ConfigParser appends to its value)
 * of every secret setting in either version, which on their own would look like nothing secret.
 */
export function configLineRedactor(...texts: string[]): (line: string) => string {
  const continuations = new Set<string>()
  for (const text of texts) {
    let inSecret = false
    for (const line of text.split(/\r?\n/)) {
      if (/^[ \t]+\S/.test(line)) {
        if (inSecret) continuations.add(line)
        continue
      }
      const match = SETTING.exec(line)
      inSecret = Boolean(match && !/^\s*[#;]/.test(line) && isSecretSettingName(match[2]!))
    }
  }
  return (line) => {
    if (continuations.has(line)) return `${/^[ \t]+/.exec(line)![0]}${redactValue(line.trim())}`
    return redactConfigLine(line)
  }
}
