import {describe, expect, it} from 'vitest'

import {unifiedDiff} from '../../src/lib/services/unified-diff.js'
import {configLineRedactor} from '../../src/lib/fs/redaction.js'

const SECRET = 'S3cretPw'

describe('dry-run diffs of ckan.ini and env files', () => {
  it('show no secret in the lines around a change: continuations, URL passwords, ?password=, *pass settings', () => {
    const before = [
      '[app:main]',
      'beaker.session.secret =',
      `    ${SECRET}-continued`,
      `sqlalchemy.url = postgresql://ckan:Ab3/${SECRET} x@db/ckan_default`,
      `ckan.datastore.write_url = postgresql://u@db/datastore?sslmode=require&password=${SECRET}`,
      `ckan.datastore.read_url = postgresql://u@db/datastore?sslkey=k.pem&sslpassword=${SECRET}`,
      `solr_url = http://solr:${SECRET}@Pw@solr:8983/solr/ckan`,
      `db_pass = ${SECRET}`,
      `smtp.pass = ${SECRET}`,
      `CKAN_SQLALCHEMY_URL=postgresql://u:Ab3/${SECRET}@db/x`,
      'ckan.site_url = https://data.example.org',
      'ckanext.xloader.api_token = old',
      'ckan.plugins = xloader',
    ].join('\n')
    const after = before.replace('ckanext.xloader.api_token = old', 'ckanext.xloader.api_token = new-token-value')
    const diff = unifiedDiff(before, after, {
      context: 20,
      newLabel: 'ckan.ini (new)',
      oldLabel: 'ckan.ini',
      redactLine: configLineRedactor(before, after),
    })
    expect(diff).toContain('-ckanext.xloader.api_token = ***(')
    expect(diff).toContain(' ckan.site_url = https://data.example.org')
    expect(diff).toContain(' ckan.plugins = xloader')
    for (const leak of [SECRET, 'new-token-value', 'Pw@solr']) expect(diff).not.toContain(leak)
  })
})
