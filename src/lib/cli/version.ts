import {isSea} from 'node:sea'

import {CKAN_VERSIONS as CKAN_MAJORS} from '../site/ckan-version.js'

/**
 * What `ckan-migrate --version` prints (bin/run.js and the single executable's entry answer it
 * before oclif loads): the version, the CKAN versions this build knows, and how it runs, so an
 * admin can tell at a glance whether the binary on a server is the one the runbook expects.
 */
export function versionText(version: string): string {
  const [from, ...to] = CKAN_MAJORS
  const runtime = isSea()
    ? `yes (Node.js ${process.version} built in)`
    : `no (Node.js ${process.version} at ${process.execPath})`
  return [
    `ckan-migrate ${version}`,
    `CKAN versions: ${CKAN_MAJORS.join(', ')} (moves a ${from} site to API tokens for the upgrade to ${to.join(' or ')})`,
    `single executable: ${runtime}`,
    `platform: ${process.platform}-${process.arch}`,
  ].join('\n')
}
