import {mkdtemp, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'

import {readCkanIni} from '../../src/lib/site/ckan-ini.js'
import {
  chooseDatabaseUrl,
  effectiveSetting,
  envvarsKey,
  envvarsName,
  resolveJwtSecret,
} from '../../src/lib/site/ckan-settings.js'
import {EXIT_CODES, MigrateError} from '../../src/lib/errors.js'

async function folderWith(files: Record<string, string>) {
  const dir = await mkdtemp(join(tmpdir(), 'ini-'))
  for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text)
  return dir
}

async function failure(promise: Promise<unknown>) {
  const error = await promise.then(
    () => undefined,
    (error_: unknown) => error_,
  )
  expect(error).toBeInstanceOf(MigrateError)
  return error as MigrateError
}

describe('readCkanIni', () => {
  it('interpolates %(here)s, other keys and %%, keeps an inline # as part of the value', async () => {
    const dir = await folderWith({
      'ckan.ini': [
        '[DEFAULT]',
        'debug = false',
        '',
        '[app:main]',
        'use = egg:ckan',
        '# a comment',
        'ckan.site_id = default',
        'ckan.storage_path = %(here)s/storage',
        'sqlalchemy.url = postgresql://ckan:p%%ss@db/ckan',
        'beaker.session.secret = abc # not a comment',
        'api_token.jwt.encode.secret = string:%(beaker.session.secret)s',
        'ckan.plugins = stats',
        '   xloader datapusher',
      ].join('\r\n'),
    })
    const ini = await readCkanIni(join(dir, 'ckan.ini'))
    expect(ini.get('ckan.storage_path')).toBe(`${dir}/storage`)
    expect(ini.get('sqlalchemy.url')).toBe('postgresql://ckan:p%ss@db/ckan')
    expect(ini.get('beaker.session.secret')).toBe('abc # not a comment')
    expect(ini.get('api_token.jwt.encode.secret')).toBe('string:abc # not a comment')
    expect(ini.plugins()).toEqual(['stats', 'xloader', 'datapusher'])
    expect(ini.get('debug')).toBe('false')
    expect(ini.where('ckan.site_id')).toMatchObject({line: 7})
  })

  it('follows use = config: chains with the top file winning, and reports where a key lives', async () => {
    const dir = await folderWith({
      'base.ini': '[app:main]\nuse = egg:ckan\nckan.site_id = base\nsqlalchemy.url = postgresql://x@db/base\n',
      'ckan.ini': '[app:main]\nuse = config:base.ini\nckan.site_id = top\n',
    })
    const ini = await readCkanIni(join(dir, 'ckan.ini'))
    expect(ini.get('ckan.site_id')).toBe('top')
    expect(ini.get('sqlalchemy.url')).toBe('postgresql://x@db/base')
    expect(ini.where('sqlalchemy.url')?.file).toBe(join(dir, 'base.ini'))
    expect(ini.files.map((file) => file.path)).toEqual([join(dir, 'ckan.ini'), join(dir, 'base.ini')])
  })

  it('lowercases keys like CKAN 2.9 and keeps their case like 2.10', async () => {
    const dir = await folderWith({'ckan.ini': '[app:main]\nSECRET_KEY = s3\n'})
    expect((await readCkanIni(join(dir, 'ckan.ini'))).get('secret_key')).toBe('s3')
    const preserved = await readCkanIni(join(dir, 'ckan.ini'), {caseRule: 'preserve'})
    expect(preserved.get('SECRET_KEY')).toBe('s3')
    expect(preserved.get('secret_key')).toBeUndefined()
  })

  it('fails in one line with exit 7 on a missing file, no [app:main], a broken interpolation, a loop, garbage', async () => {
    const dir = await folderWith({
      'a.ini': '[app:main]\nuse = config:b.ini\n',
      'b.ini': '[app:main]\nuse = config:a.ini\n',
      'garbage.ini': '[app:main]\nthis line has no delimiter\n',
      'interp.ini': '[app:main]\nx = %(nope)s\n',
      'lone.ini': '[app:main]\nx = 100%\n',
      'nomain.ini': '[server:main]\nport = 5000\n',
    })
    const cases: Array<[string, RegExp]> = [
      ['missing.ini', /does not exist/],
      ['nomain.ini', /no \[app:main\] section/],
      ['garbage.ini', /line 2 is not a setting/],
      ['a.ini', /loops back/],
    ]
    for (const [name, message] of cases) {
      const error = await failure(readCkanIni(join(dir, name)))
      expect(error.exitCode).toBe(EXIT_CODES.badInput)
      expect(error.message).toMatch(message)
      expect(error.message).not.toContain('\n')
    }
    const interp = await readCkanIni(join(dir, 'interp.ini'))
    expect(() => interp.get('x')).toThrow(/%\(nope\)s, which is not set/)
    const lone = await readCkanIni(join(dir, 'lone.ini'))
    expect(() => lone.get('x')).toThrow(/lone "%"/)
  })
})

describe('ckan settings', () => {
  it('lets CKAN_SQLALCHEMY_URL override sqlalchemy.url exactly as CKAN does', async () => {
    const dir = await folderWith({'ckan.ini': '[app:main]\nsqlalchemy.url = postgresql://ini@db/ckan\n'})
    const ini = await readCkanIni(join(dir, 'ckan.ini'))
    expect(chooseDatabaseUrl({ini}, {}).url).toBe('postgresql://ini@db/ckan')
    expect(chooseDatabaseUrl({ini}, {CKAN_SQLALCHEMY_URL: 'postgresql://env@db/ckan'})).toEqual({
      source: 'CKAN_SQLALCHEMY_URL',
      url: 'postgresql://env@db/ckan',
    })
    expect(chooseDatabaseUrl({databaseUrl: 'postgresql://flag@db/x', ini}, {CKAN_SQLALCHEMY_URL: 'y'}).url).toBe(
      'postgresql://flag@db/x',
    )
  })

  it('maps ckanext-envvars names both ways and honours them only with the plugin', async () => {
    expect(envvarsName('ckan.datapusher.api_token')).toBe('CKAN__DATAPUSHER__API_TOKEN')
    expect(envvarsName('ckanext.xloader.api_token')).toBe('CKANEXT__XLOADER__API_TOKEN')
    expect(envvarsName('api_token.jwt.encode.secret')).toBe('CKAN___API_TOKEN__JWT__ENCODE__SECRET')
    expect(envvarsKey('CKAN___BEAKER__SESSION__SECRET')).toBe('beaker.session.secret')
    expect(envvarsKey('CKAN___SECRET_KEY')).toBe('SECRET_KEY')
    const dir = await folderWith({
      'with.ini': '[app:main]\nckan.plugins = xloader envvars\nckanext.xloader.api_token = ini\n',
      'without.ini': '[app:main]\nckan.plugins = xloader\nckanext.xloader.api_token = ini\n',
    })
    const env = {CKANEXT__XLOADER__API_TOKEN: 'env'}
    expect(effectiveSetting(await readCkanIni(join(dir, 'with.ini')), 'ckanext.xloader.api_token', env).value).toBe(
      'env',
    )
    expect(effectiveSetting(await readCkanIni(join(dir, 'without.ini')), 'ckanext.xloader.api_token', env).value).toBe(
      'ini',
    )
  })

  it("resolves the JWT secret with each version's fallback and the string:/file: prefixes", async () => {
    const dir = await folderWith({
      'fallback.ini': '[app:main]\nbeaker.session.secret = beaker\nSECRET_KEY = flask\n',
      'file.ini': '[app:main]\napi_token.jwt.encode.secret = file:%(here)s/jwt.secret\n',
      'jwt.secret': 'from-file\n',
      'pinned.ini': '[app:main]\nbeaker.session.secret = beaker\napi_token.jwt.encode.secret = string:pinned\n',
      'bare.ini': '[app:main]\napi_token.jwt.encode.secret = noprefix\n',
      'only-beaker.ini': '[app:main]\nbeaker.session.secret = beaker\n',
    })
    const read = (name: string, caseRule: 'lowercase' | 'preserve' = 'lowercase') =>
      readCkanIni(join(dir, name), {caseRule})
    const fallback29 = await resolveJwtSecret(await read('fallback.ini'), '2.9', 'encode', {})
    expect([fallback29.secret.reveal(), fallback29.from, fallback29.viaFallback]).toEqual([
      'beaker',
      'beaker.session.secret',
      true,
    ])
    const fallback211 = await resolveJwtSecret(await read('fallback.ini', 'preserve'), '2.11', 'decode', {})
    expect([fallback211.secret.reveal(), fallback211.from]).toEqual(['flask', 'SECRET_KEY'])
    const beakerOn211 = await resolveJwtSecret(await read('only-beaker.ini', 'preserve'), '2.11', 'encode', {})
    expect(beakerOn211.secret.reveal()).toBe('beaker')
    expect((await resolveJwtSecret(await read('pinned.ini'), '2.11', 'encode', {})).secret.reveal()).toBe('pinned')
    const fromFile = await resolveJwtSecret(await read('file.ini'), '2.10', 'encode', {})
    expect([fromFile.kind, fromFile.secret.reveal()]).toEqual(['file', 'from-file\n'])
    const bare = await failure(resolveJwtSecret(await read('bare.ini'), '2.9', 'encode', {}))
    expect(bare.message).toMatch(/no string: or file: prefix/)
    expect(bare.message).not.toContain('noprefix')
  })
})

/** What CKAN's strict ConfigParser (2.9) / RawConfigParser (2.10+ chain reader) refuses, and what it accepts. */
describe('readCkanIni refuses what CKAN’s ConfigParser refuses (duplicates)', () => {
  const refused = async (text: string, caseRule: 'lowercase' | 'preserve' = 'lowercase') => {
    const dir = await folderWith({'ckan.ini': text})
    const error = await failure(readCkanIni(join(dir, 'ckan.ini'), {caseRule}))
    expect(error.exitCode).toBe(EXIT_CODES.badInput)
    expect(error.message).not.toContain('\n')
    return error
  }

  it('a key set twice in [app:main], names both lines (case-insensitive on every version)', async () => {
    const text =
      '[app:main]\nuse = egg:ckan\nsqlalchemy.url = postgresql://a/one\nckan.site_id = x\nSQLAlchemy.URL = postgresql://b/two\n'
    for (const caseRule of ['lowercase', 'preserve'] as const) {
      const error = await refused(text, caseRule)
      expect(error.message).toMatch(/ckan\.ini sets SQLAlchemy\.URL more than once in \[app:main\] \(lines 3, 5\)$/)
      expect(error.suggestion).toMatch(/ConfigParser refuses/)
    }
  })

  it('a section written twice (the second [app:main] would otherwise win silently)', async () => {
    const error = await refused(
      '[app:main]\nckan.site_id = a\n\n[server:main]\nport = 5000\n\n[app:main]\nsqlalchemy.url = postgresql://x/y\n',
    )
    expect(error.message).toMatch(/ckan\.ini has the section \[app:main\] more than once \(lines 1, 7\)$/)
  })

  it('a key set twice in another section, or twice across two [DEFAULT] headers', async () => {
    expect((await refused('[app:main]\na = 1\n[server:main]\nport = 5000\nport = 5001\n')).message).toMatch(
      /sets port more than once in \[server:main\] \(lines 4, 5\)/,
    )
    expect((await refused('[DEFAULT]\ndebug = false\n[app:main]\na = 1\n[DEFAULT]\nDebug = true\n')).message).toMatch(
      /sets Debug more than once in \[DEFAULT\] \(lines 2, 6\)/,
    )
  })

  it('accepts what ConfigParser accepts: [DEFAULT] twice, a key in [DEFAULT] and [app:main], a key in two files of a chain', async () => {
    const dir = await folderWith({
      'base.ini': '[app:main]\nuse = egg:ckan\nckan.site_id = base\n',
      'ckan.ini':
        '[DEFAULT]\ndebug = false\n[app:main]\nuse = config:base.ini\ndebug = true\nckan.site_id = top\n[DEFAULT]\nother = 1\n',
    })
    const ini = await readCkanIni(join(dir, 'ckan.ini'))
    expect(ini.get('ckan.site_id')).toBe('top')
    expect(ini.get('debug')).toBe('true')
  })
})
