import {execFile} from 'node:child_process'
import {mkdtemp, readdir, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {promisify} from 'node:util'
import * as openpgp from 'openpgp'
import {onTestFinished} from 'vitest'

const execFileAsync = promisify(execFile)

export type ThrowawayKey = {
  fingerprint: string
  keyId: string
  passphrase: string
  publicKeyFile: string
  secretKeyFile: string
}

/** A fresh OpenPGP key pair (curve25519, passphrase-protected) in a temporary folder, removed after the test. */
export async function makeThrowawayKey(folder?: string): Promise<ThrowawayKey> {
  const dir = folder ?? (await temporaryFolder('ckan-migrate-key-'))
  const passphrase = 'correct horse battery staple'
  const {privateKey, publicKey} = await openpgp.generateKey({
    curve: 'curve25519Legacy',
    format: 'armored',
    passphrase,
    type: 'ecc',
    userIDs: [{email: 'backup@example.org', name: 'CKAN backup'}],
  })
  const key = await openpgp.readKey({armoredKey: publicKey})
  const publicKeyFile = join(dir, 'backup-key.asc')
  const secretKeyFile = join(dir, 'backup-secret.asc')
  await writeFile(publicKeyFile, publicKey)
  await writeFile(secretKeyFile, privateKey, {mode: 0o600})
  return {
    fingerprint: key.getFingerprint().toUpperCase(),
    keyId: key.getKeyID().toHex().toUpperCase(),
    passphrase,
    publicKeyFile,
    secretKeyFile,
  }
}

/** A GnuPG home of its own holding only `key`'s public half; sets GNUPGHOME for the test. */
export async function useThrowawayGnupgHome(key: ThrowawayKey): Promise<string> {
  const home = await temporaryFolder('ckan-migrate-gnupg-')
  await execFileAsync('gpg', ['--batch', '--homedir', home, '--import', key.publicKeyFile])
  const previous = process.env.GNUPGHOME
  process.env.GNUPGHOME = home
  onTestFinished(async () => {
    if (previous === undefined) delete process.env.GNUPGHOME
    else process.env.GNUPGHOME = previous
    await execFileAsync('gpgconf', ['--homedir', home, '--kill', 'all']).catch(() => {})
  })
  return home
}

export async function temporaryFolder(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  onTestFinished(() => rm(dir, {force: true, recursive: true}))
  return dir
}

export async function listFolder(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir)).sort()
  } catch {
    return []
  }
}
