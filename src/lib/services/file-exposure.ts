import {readFile} from 'node:fs/promises'

import type {ConfigFile} from './config-file-writer.js'

/**
 * The warning for a config file every local user can read (mode o+r) that holds, or is about to
 * hold, service tokens or the JWT secret: what it exposes and the exact command that hides it from
 * others while CKAN (or docker compose) still reads it. The file's mode is never changed for the
 * admin: only they know which account CKAN runs as.
 *
 * Who reads what (docs/security-model.md, "Config files"): CKAN's own uWSGI config runs the web
 * app as www-data (ckan/ckan `ckan-uwsgi.ini`: `uid = www-data`, `guid = www-data`) and its job
 * worker too (`ckan/config/supervisor-ckan-worker.conf`: `user=www-data`); a source install may
 * run as the virtualenv's owner. Docker env files are read by `docker compose` as the user who
 * runs it, not by CKAN.
 */
export async function exposureWarning(
  file: Pick<ConfigFile, 'gid' | 'givenPath' | 'mode' | 'uid'>,
  kind: 'env' | 'ini',
  tense: 'holds' | 'would hold',
): Promise<string | undefined> {
  if ((file.mode & 0o004) === 0) return undefined
  const owner = await accountName('/etc/passwd', file.uid)
  const group = await accountName('/etc/group', file.gid)
  const mode = (file.mode & 0o777).toString(8).padStart(4, '0')
  const path = shellWord(file.givenPath)
  const what = `${file.givenPath} ${tense} API tokens (or the JWT signing secret) and every user of this machine can read it (mode ${mode}, owner ${owner}:${group})`
  if (kind === 'env')
    return `${what}: chmod 0640 ${path} (docker compose reads it as the user who runs it: owner ${owner} or group ${group}, or root).`
  if (file.uid === 0 && file.gid === 0)
    return `${what}: chown root:www-data ${path} && chmod 0640 ${path} (www-data: the account CKAN's uWSGI and workers run as by default; put CKAN's own account's group if it differs).`
  return `${what}: chmod 0640 ${path} (owner ${owner} and group ${group} keep reading it; CKAN must run as one of them, by default www-data).`
}

/** The name of a uid/gid from /etc/passwd or /etc/group, or the number when not listed there. */
async function accountName(table: string, id: number): Promise<string> {
  try {
    for (const line of (await readFile(table, 'utf8')).split('\n')) {
      const [name, , number] = line.split(':')
      if (name && number !== undefined && Number(number) === id) return name
    }
  } catch {
    // No such table (a minimal container): the number does.
  }
  return String(id)
}

/** A path as one shell word: quoted only when it needs it. */
function shellWord(path: string): string {
  return /^[\w./+@%=:,-]+$/.test(path) ? path : `'${path.replaceAll("'", String.raw`'\''`)}'`
}
