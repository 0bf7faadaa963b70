import {fingerprintOf} from '../secret.js'

/**
 * Hides secret values in ckan.ini and env-file lines before they are shown (dry-run diffs):
 * any setting whose name says it holds a secret (token, secret, password, key, pass_auth_header)
 * shows `***(fingerprint)` instead of its value, and passwords inside URLs become `***`.
 * Commented-out settings are redacted too. Over-redacting is fine; under-redacting is a leak.
 */
const SECRET_NAME = /secret|token|passw|apikey|api_key|pass_auth_header|private|credential|_key\b|__key\b/i
const NOT_SECRET = /(header_name|nbytes|algorithm|lifetime|create_default_api_keys|_url|_path)$/i
const SETTING = /^(\s*(?:[#;]+\s*)?(?:export\s+)?)([^:=\s][^:=]*?)(\s*[:=]\s*)(.*)$/
const URL_PASSWORD = /(\w[\w+.-]*:\/\/[^\s:/@]*:)[^\s@/]+@/g

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
  return line.replaceAll(URL_PASSWORD, '$1***@')
}
