import {describe, expect, it} from 'vitest'

import {collectConfigFindings} from '../../../src/lib/audit/config-findings.js'
import {CkanIni, parseIniText} from '../../../src/lib/site/ckan-ini.js'

const SECRET = 'Sup3r-S3cret-Value'

function iniOf(lines: string[], caseRule: 'lowercase' | 'preserve' = 'lowercase'): CkanIni {
  return new CkanIni([parseIniText(['[app:main]', ...lines].join('\n'), '/etc/ckan/ckan.ini')], {caseRule, env: {}})
}

async function findingsOf(
  lines: string[],
  options: {caseRule?: 'lowercase' | 'preserve'; env?: NodeJS.ProcessEnv; version?: '2.10' | '2.11' | '2.9'} = {},
) {
  const ini = iniOf(lines, options.caseRule)
  const findings = await collectConfigFindings({
    env: options.env ?? {},
    ini,
    plugins: ini.plugins(),
    version: options.version,
  })
  // No finding ever shows a secret value.
  expect(JSON.stringify(findings)).not.toContain(SECRET)
  return new Map(findings.map((finding) => [finding.id, finding]))
}

const PINNED = [
  `beaker.session.secret = ${SECRET}`,
  `api_token.jwt.encode.secret = string:${SECRET}`,
  `api_token.jwt.decode.secret = string:${SECRET}`,
]

describe('collectConfigFindings', () => {
  it('is quiet about a pinned configuration except for the informational reminders', async () => {
    const findings = await findingsOf([...PINNED, 'ckan.plugins = stats'])
    expect([...findings.keys()].sort()).toEqual(['tokens-never-expire'])
    // ckan.auth.enable_cookie_auth_in_api exists from 2.10 on (config_declaration.yaml): never on 2.9.
    const on210 = await findingsOf([...PINNED, 'ckan.plugins = stats'], {version: '2.10'})
    expect([...on210.keys()].sort()).toEqual(['cookie-auth-in-api', 'tokens-never-expire'])
  })

  it('calls unpinned JWT secrets a blocker and names the fallback of the version', async () => {
    const on29 = await findingsOf([`beaker.session.secret = ${SECRET}`])
    expect(on29.get('jwt-secrets-not-pinned')).toMatchObject({count: 2, severity: 'blocker'})
    expect(on29.get('jwt-secrets-not-pinned')!.title).toMatch(
      /signed with beaker\.session\.secret now and with SECRET_KEY on 2\.11/,
    )
    const onlyEncode = await findingsOf([
      `beaker.session.secret = other`,
      `api_token.jwt.encode.secret = string:${SECRET}`,
    ])
    expect(onlyEncode.get('jwt-secrets-not-pinned')).toMatchObject({sample: ['api_token.jwt.decode.secret']})
    // decode falls back to beaker.session.secret, which is not the encode secret.
    expect(onlyEncode.get('jwt-secrets-differ')).toMatchObject({
      details: {decodeFrom: 'beaker.session.secret'},
      severity: 'blocker',
    })
  })

  it('on 2.11 names SECRET_KEY, the fallback 2.11 signs with, and no Beaker', async () => {
    const on211 = await findingsOf([`SECRET_KEY = ${SECRET}`], {caseRule: 'preserve', version: '2.11'})
    const unpinned = on211.get('jwt-secrets-not-pinned')!
    expect(unpinned.title).toMatch(/signed with SECRET_KEY, so changing SECRET_KEY breaks every token$/)
    expect(unpinned.fix).toMatch(/string:<the value of SECRET_KEY>/)
    expect(JSON.stringify(unpinned)).not.toMatch(/beaker/i)
    const interpolated = await findingsOf(
      [
        `SECRET_KEY = ${SECRET}`,
        'api_token.jwt.encode.secret = string:%(SECRET_KEY)s',
        'api_token.jwt.decode.secret = string:%(SECRET_KEY)s',
      ],
      {caseRule: 'preserve', version: '2.11'},
    )
    expect(interpolated.get('jwt-secret-interpolated')).toMatchObject({details: {from: 'SECRET_KEY'}})
    expect(interpolated.get('jwt-secret-interpolated')!.fix).not.toMatch(/beaker/i)
  })

  it('flags a secret without its string: prefix, secrets that differ, and %(...)s secrets', async () => {
    const bare = await findingsOf([
      `api_token.jwt.encode.secret = ${SECRET}`,
      `api_token.jwt.decode.secret = string:${SECRET}`,
    ])
    expect(bare.get('jwt-secret-without-prefix')).toMatchObject({
      sample: ['api_token.jwt.encode.secret'],
      severity: 'blocker',
    })
    const differ = await findingsOf([
      `api_token.jwt.encode.secret = string:${SECRET}`,
      'api_token.jwt.decode.secret = string:another',
    ])
    expect(differ.get('jwt-secrets-differ')).toMatchObject({count: 2, severity: 'blocker'})
    const interpolated = await findingsOf([
      `beaker.session.secret = ${SECRET}`,
      'api_token.jwt.encode.secret = string:%(beaker.session.secret)s',
      'api_token.jwt.decode.secret = string:%(beaker.session.secret)s',
    ])
    expect(interpolated.get('jwt-secret-interpolated')).toMatchObject({count: 2, severity: 'warning'})
    expect(interpolated.has('jwt-secrets-differ')).toBe(false)
    const none = await findingsOf([])
    expect(none.get('jwt-secret-unavailable')).toMatchObject({severity: 'blocker'})
  })

  it('needs a token setting for every enabled service, and refuses a legacy key there', async () => {
    const findings = await findingsOf([
      ...PINNED,
      'ckan.plugins = xloader datapusher_plus validation',
      'ckanext.xloader.api_token = NOT_SET',
      'ckan.datapusher.api_token = 0f0e2c3a-1b2c-4d5e-8f90-0123456789ab',
    ])
    expect(findings.get('service-token-missing')).toMatchObject({
      sample: ['xloader (ckanext.xloader.api_token)'],
      severity: 'blocker',
    })
    // datapusher_plus falls back to ckan.datapusher.api_token, which holds a legacy key.
    expect(findings.get('service-token-is-legacy-key')).toMatchObject({
      sample: ['datapusher_plus (ckan.datapusher.api_token)'],
      severity: 'blocker',
    })
    expect(findings.get('validation-token-missing')).toMatchObject({severity: 'warning'})
    expect(JSON.stringify([...findings.values()])).not.toContain('0f0e2c3a-1b2c')
    const noAuthHeader = await findingsOf([
      ...PINNED,
      'ckan.plugins = validation',
      'ckanext.validation.pass_auth_header = false',
    ])
    expect(noAuthHeader.has('validation-token-missing')).toBe(false)
  })

  it('warns about a legacy key in the token setting of a plugin that is not enabled', async () => {
    const findings = await findingsOf([
      ...PINNED,
      'ckan.plugins = stats datapusher',
      'ckan.datapusher.api_token = eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.e30.sig',
      'ckanext.xloader.api_token = 0f0e2c3a-1b2c-4d5e-8f90-0123456789ab',
    ])
    expect(findings.get('disabled-service-token-is-legacy-key')).toMatchObject({
      count: 1,
      sample: ['ckanext.xloader.api_token (xloader not in ckan.plugins)'],
      severity: 'warning',
    })
    expect(findings.has('service-token-is-legacy-key')).toBe(false)
    expect(JSON.stringify([...findings.values()])).not.toContain('0f0e2c3a-1b2c')
    // Read by datapusher and datapusher_plus: dormant only when neither is enabled.
    const neither = await findingsOf([
      ...PINNED,
      'ckan.plugins = stats',
      'ckan.datapusher.api_token = 0f0e2c3a-1b2c-4d5e-8f90-0123456789ab',
    ])
    expect(neither.get('disabled-service-token-is-legacy-key')!.sample).toEqual([
      'ckan.datapusher.api_token (datapusher, datapusher_plus not in ckan.plugins)',
    ])
    const placeholder = await findingsOf([...PINNED, 'ckan.plugins = stats', 'ckanext.xloader.api_token = NOT_SET'])
    expect(placeholder.has('disabled-service-token-is-legacy-key')).toBe(false)
  })

  it('reports the header name, default API keys, cookie auth and token expiry', async () => {
    const findings = await findingsOf(
      [
        ...PINNED,
        'apikey_header_name = X-CKAN-API-Key',
        'ckan.auth.create_default_api_keys = True',
        'ckan.plugins = expire_api_token',
        'expire_api_token.default_lifetime = 3600',
      ],
      {version: '2.10'},
    )
    expect(findings.get('apikey-header-name-set')).toMatchObject({
      details: {value: 'X-CKAN-API-Key'},
      severity: 'warning',
    })
    // What 2.11 really does: the old key still names its one header (legacy_key of apitoken_header_name).
    expect(findings.get('apikey-header-name-set')?.fix).toContain(
      '2.11 reads one header only, apitoken_header_name, and while that is unset it takes this value',
    )
    expect(findings.get('create-default-api-keys')).toMatchObject({severity: 'warning'})
    expect(findings.get('create-default-api-keys')!.fix).toMatch(
      /purge-keys --all: on CKAN 2\.10 they authenticate nothing/,
    )
    expect(findings.get('cookie-auth-in-api')).toMatchObject({severity: 'info'})
    expect(findings.get('expire-api-token-enabled')).toMatchObject({
      details: {defaultLifetime: '3600'},
      severity: 'warning',
    })
    expect(findings.has('tokens-never-expire')).toBe(false)
  })

  it('applies the environment: ckanext-envvars names (plugin enabled) and core CKAN_* overrides, naming variables only', async () => {
    const env = {
      CKAN___API_TOKEN__JWT__DECODE__SECRET: `string:${SECRET}`,
      CKAN_SITE_ID: 'portal',
      CKANEXT__XLOADER__API_TOKEN: 'eyJ.e30.sig',
    }
    const findings = await findingsOf(
      [`api_token.jwt.encode.secret = string:${SECRET}`, 'ckan.plugins = xloader envvars'],
      {env},
    )
    expect(findings.has('jwt-secrets-not-pinned')).toBe(false)
    expect(findings.has('service-token-missing')).toBe(false)
    expect(findings.get('env-overrides')!.sample).toEqual([
      'CKAN_SITE_ID → ckan.site_id',
      'CKANEXT__XLOADER__API_TOKEN → ckanext.xloader.api_token',
      'CKAN___API_TOKEN__JWT__DECODE__SECRET → api_token.jwt.decode.secret',
    ])
  })

  it('follows the case rule: 2.10+ keys keep their case, so API_Token.JWT.* is another key there', async () => {
    const lines = [`api_token.JWT.encode.secret = string:${SECRET}`, `api_token.JWT.decode.secret = string:${SECRET}`]
    expect((await findingsOf(lines, {caseRule: 'lowercase'})).has('jwt-secrets-not-pinned')).toBe(false)
    expect((await findingsOf(lines, {caseRule: 'preserve', version: '2.10'})).has('jwt-secrets-not-pinned')).toBe(true)
  })

  it('calls a key written twice in [app:main] a blocker', async () => {
    const findings = await findingsOf([...PINNED, 'ckan.site_id = a', 'ckan.site_id = b'])
    expect(findings.get('ini-duplicate-keys')).toMatchObject({
      sample: ['ckan.site_id (/etc/ckan/ckan.ini lines 5, 6)'],
      severity: 'blocker',
    })
  })

  it('without a ckan.ini, says the configuration was not checked and uses status_show plugins', async () => {
    const findings = await collectConfigFindings({env: {}, plugins: ['expire_api_token']})
    expect(findings.map((finding) => finding.id)).toEqual(['config-not-checked', 'expire-api-token-enabled'])
  })
})
