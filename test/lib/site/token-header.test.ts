import {describe, expect, it} from 'vitest'

import {CkanIni, parseIniText} from '../../../src/lib/site/ckan-ini.js'
import {chooseTokenHeader, configuredTokenHeader, headersCkanReads} from '../../../src/lib/site/token-header.js'

function ini(lines: string[], caseRule: 'lowercase' | 'preserve' = 'preserve'): CkanIni {
  return new CkanIni([parseIniText(['[app:main]', ...lines].join('\n'), '/etc/ckan/ckan.ini')], {caseRule, env: {}})
}

describe('the token header rule', () => {
  it('is what each CKAN version reads (ckan/views/__init__.py; 2.11 config_declaration.yaml legacy_key)', () => {
    const settings = (values: Record<string, string>) => (key: string) => values[key]
    expect(headersCkanReads('2.9', settings({}))).toEqual(['X-CKAN-API-Key', 'Authorization'])
    expect(headersCkanReads('2.10', settings({apitoken_header_name: 'X-Token'}))).toEqual([
      'X-CKAN-API-Key',
      'Authorization',
    ])
    expect(headersCkanReads('2.10', settings({apikey_header_name: 'Authorization'}))).toEqual(['Authorization'])
    expect(headersCkanReads('2.11', settings({}))).toEqual(['Authorization'])
    expect(headersCkanReads('2.11', settings({apikey_header_name: 'X-CKAN-API-Key'}))).toEqual(['X-CKAN-API-Key'])
    expect(
      headersCkanReads('2.11', settings({apikey_header_name: 'X-CKAN-API-Key', apitoken_header_name: 'X-Token'})),
    ).toEqual(['X-Token'])
  })

  it('sends Authorization on 2.9/2.10 (read there whatever the ini says) and the one header 2.11 reads', () => {
    const carried = ini(['apikey_header_name = X-CKAN-API-Key'])
    expect(configuredTokenHeader({env: {}, ini: carried, version: '2.10'})).toMatchObject({
      name: 'Authorization',
      source: 'config',
    })
    expect(configuredTokenHeader({env: {}, ini: carried, version: '2.11'})).toMatchObject({
      name: 'X-CKAN-API-Key',
      source: 'config',
      why: 'apikey_header_name in /etc/ckan/ckan.ini, which CKAN 2.11 reads as apitoken_header_name (its legacy key)',
    })
    expect(configuredTokenHeader({env: {}, flag: 'X-Mine', ini: carried, version: '2.11'})).toMatchObject({
      name: 'X-Mine',
      source: 'flag',
    })
    // Nothing known: the caller uses the run folder's record, then a probe.
    expect(configuredTokenHeader({env: {}, version: '2.11'})).toBeUndefined()
    // No ini, but ckanext-envvars' variable (as ckan-docker sets them).
    expect(configuredTokenHeader({env: {CKAN___APIKEY_HEADER_NAME: 'X-Env'}, version: '2.11'})).toMatchObject({
      name: 'X-Env',
      source: 'env',
    })
    // With envvars enabled in the ini, its variable beats the ini line.
    const withEnvvars = new CkanIni(
      [parseIniText('[app:main]\nckan.plugins = envvars\napikey_header_name = X-CKAN-API-Key\n', '/etc/ckan/ckan.ini')],
      {caseRule: 'preserve', env: {}},
    )
    expect(
      configuredTokenHeader({env: {CKAN___APITOKEN_HEADER_NAME: 'X-Env'}, ini: withEnvvars, version: '2.11'}),
    ).toMatchObject({name: 'X-Env', source: 'env', why: 'CKAN___APITOKEN_HEADER_NAME'})
  })

  it('checks the other usual headers before a refusal is blamed on the credential', async () => {
    const reads = (header: string) => async (name: string) => name.toLowerCase() === header.toLowerCase()
    expect(await chooseTokenHeader({accepts: reads('X-CKAN-API-Key'), recorded: 'Authorization'})).toMatchObject({
      accepted: true,
      header: {name: 'X-CKAN-API-Key', source: 'probe'},
      instead: {name: 'Authorization'},
    })
    expect(await chooseTokenHeader({accepts: reads('X-CKAN-API-Key')})).toMatchObject({
      accepted: true,
      header: {name: 'X-CKAN-API-Key'},
    })
    expect(await chooseTokenHeader({accepts: reads('nothing')})).toMatchObject({
      accepted: false,
      tried: ['Authorization', 'X-CKAN-API-Key'],
    })
  })
})
