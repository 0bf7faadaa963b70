import {execFile, spawn} from 'node:child_process'
import {Readable} from 'node:stream'
import {promisify} from 'node:util'
import * as openpgp from 'openpgp'

import {EXIT_CODES, MigrateError} from '../errors.js'
import {readFailure, readInputFile, SMALL_FILE_LIMIT} from '../fs/input-file.js'
import type {Secret} from '../secret.js'
import {collectExit, firstErrorLine} from './pg-tools.js'

const execFileAsync = promisify(execFile)

/** Who a backup is encrypted to, as recorded in its sidecar and file name. */
export type BackupRecipient = {
  /** 'openpgp.js' for --recipient-key FILE, 'gnupg' for --key-id (the local keyring). */
  engine: 'gnupg' | 'openpgp.js'
  /** Full fingerprint of the primary key (upper-case hex). */
  fingerprint: string
  /** Long key id of the primary key (16 upper-case hex digits): part of the file name. */
  keyId: string
  userIds: string[]
}

export type Encryption = {
  /** Encrypts a stream; `done` rejects when the encrypter failed even though the stream ended. */
  encrypt(plain: Readable): Promise<{done: Promise<void>; output: Readable}>
  recipient: BackupRecipient
}

const badKey = (message: string, suggestion: string, cause?: unknown) =>
  new MigrateError(message, {cause, exitCode: EXIT_CODES.badInput, suggestion})

/**
 * A recipient from an OpenPGP public key file (armored or binary), encrypting in-process with
 * OpenPGP.js (streaming: the plain dump only ever exists in memory, chunk by chunk).
 */
export async function recipientFromKeyFile(path: string): Promise<Encryption> {
  let bytes: Buffer
  try {
    bytes = await readInputFile(path, {maxBytes: SMALL_FILE_LIMIT})
  } catch (error) {
    throw badKey(
      `Cannot read the recipient key ${path}: it ${readFailure(error)}`,
      'Pass --recipient-key with the armored public key file (gpg --armor --export KEYID > backup-key.asc).',
      error,
    )
  }
  let key: openpgp.Key
  try {
    const text = bytes.toString('utf8')
    key = text.includes('-----BEGIN PGP')
      ? await openpgp.readKey({armoredKey: text})
      : await openpgp.readKey({binaryKey: new Uint8Array(bytes)})
  } catch (error) {
    throw badKey(
      `${path} is not an OpenPGP public key`,
      'Export the backup key with gpg --armor --export KEYID > backup-key.asc and pass that file.',
      error,
    )
  }
  const publicKey = key.isPrivate() ? key.toPublic() : key
  try {
    await publicKey.getEncryptionKey()
  } catch (error) {
    throw badKey(
      `The key in ${path} cannot encrypt: ${describeOpenpgpError(error)}`,
      'Use a valid (not expired, not revoked) key with an encryption subkey.',
      error,
    )
  }
  const recipient: BackupRecipient = {
    engine: 'openpgp.js',
    fingerprint: publicKey.getFingerprint().toUpperCase(),
    keyId: publicKey.getKeyID().toHex().toUpperCase(),
    userIds: publicKey.getUserIDs(),
  }
  return {
    async encrypt(plain) {
      const message = await openpgp.createMessage({binary: Readable.toWeb(plain) as ReadableStream<Uint8Array>})
      const encrypted = await openpgp.encrypt({encryptionKeys: publicKey, format: 'binary', message})
      const output = Readable.fromWeb(encrypted as import('node:stream/web').ReadableStream<Uint8Array>)
      return {done: Promise.resolve(), output}
    },
    recipient,
  }
}

/**
 * A recipient from the local GnuPG keyring (`--key-id`), encrypting by piping through
 * `gpg --encrypt`: the keyring is GnuPG's own format and only gpg reads it reliably.
 */
export async function recipientFromGpgKeyring(keyId: string, options: {gpg?: string} = {}): Promise<Encryption> {
  const gpg = options.gpg ?? 'gpg'
  let stdout: string
  try {
    ;({stdout} = await execFileAsync(
      gpg,
      ['--batch', '--no-tty', '--with-colons', '--fixed-list-mode', '--list-keys', '--', keyId],
      {timeout: 60_000},
    ))
  } catch (error) {
    const {code, stderr} = error as NodeJS.ErrnoException & {stderr?: string}
    if (code === 'ENOENT') {
      throw new MigrateError('gpg (GnuPG) was not found on the PATH', {
        cause: error,
        exitCode: EXIT_CODES.toolMissing,
        suggestion:
          'Install GnuPG (apt-get install gnupg), or pass --recipient-key with an armored public key file instead of --key-id.',
      })
    }
    throw badKey(
      `No key ${keyId} in the GnuPG keyring${stderr ? ` (${firstErrorLine(stderr)})` : ''}`,
      'Import the backup public key first (gpg --import backup-key.asc), check gpg --list-keys, or pass --recipient-key FILE.',
      error,
    )
  }
  const keys = parseGpgColons(stdout)
  if (keys.length === 0)
    throw badKey(
      `No key ${keyId} in the GnuPG keyring`,
      'Import the backup public key first (gpg --import backup-key.asc) or pass --recipient-key FILE.',
    )
  if (keys.length > 1) {
    throw badKey(
      `--key-id ${keyId} matches ${keys.length} keys in the GnuPG keyring`,
      'Pass the full fingerprint of the one backup key (gpg --list-keys --fingerprint).',
    )
  }
  const key = keys[0]!
  if (!key.canEncrypt) {
    throw badKey(
      `The key ${key.keyId} cannot encrypt (expired, revoked, disabled or without an encryption subkey)`,
      'Use a valid backup key with an encryption subkey.',
    )
  }
  const recipient: BackupRecipient = {
    engine: 'gnupg',
    fingerprint: key.fingerprint,
    keyId: key.keyId,
    userIds: key.userIds,
  }
  return {
    async encrypt(plain) {
      // --trust-model always: the key was chosen explicitly by fingerprint; no trust prompt in batch mode.
      const child = spawn(
        gpg,
        [
          '--batch',
          '--no-tty',
          '--quiet',
          '--trust-model',
          'always',
          '--encrypt',
          '--recipient',
          key.fingerprint,
          '--output',
          '-',
        ],
        {
          stdio: ['pipe', 'pipe', 'pipe'],
        },
      )
      const exited = collectExit(child, false)
      plain.on('error', (error) => child.stdin.destroy(error))
      child.stdin.on('error', () => {})
      plain.pipe(child.stdin)
      const done = exited.then(({code, stderr}) => {
        if (code !== 0)
          throw new MigrateError(`gpg could not encrypt the backup: ${firstErrorLine(stderr)}`, {
            exitCode: EXIT_CODES.toolMissing,
            suggestion: 'Check that gpg works for this user (gpg --list-keys) and the key is valid.',
          })
      })
      return {done, output: child.stdout}
    },
    recipient,
  }
}

type GpgKey = {canEncrypt: boolean; fingerprint: string; keyId: string; userIds: string[]}

/** Reads `gpg --with-colons --list-keys` output: pub / fpr / uid records. */
export function parseGpgColons(text: string): GpgKey[] {
  const keys: GpgKey[] = []
  let current: GpgKey | undefined
  let expectFingerprint = false
  for (const line of text.split('\n')) {
    const fields = line.split(':')
    const type = fields[0]
    if (type === 'pub') {
      const validity = fields[1] ?? ''
      const capabilities = fields[11] ?? ''
      current = {
        canEncrypt: capabilities.includes('E') && !/[eird]/.test(validity) && !capabilities.includes('D'),
        fingerprint: '',
        keyId: (fields[4] ?? '').toUpperCase(),
        userIds: [],
      }
      keys.push(current)
      expectFingerprint = true
    } else if (type === 'fpr' && current && expectFingerprint) {
      current.fingerprint = (fields[9] ?? '').toUpperCase()
      expectFingerprint = false
    } else if (type === 'uid' && current) {
      current.userIds.push(unescapeColons(fields[9] ?? ''))
    } else if (type === 'sub') {
      expectFingerprint = false
    }
  }
  return keys
}

function unescapeColons(text: string): string {
  return text.replaceAll(/\\x([0-9a-f]{2})/gi, (_, hex: string) => String.fromCodePoint(Number.parseInt(hex, 16)))
}

/** Opens an OpenPGP secret key (armored or binary), unlocking it with the passphrase when it has one. */
export async function readSecretKey(path: string, passphrase: Secret | undefined): Promise<openpgp.PrivateKey> {
  let bytes: Buffer
  try {
    bytes = await readInputFile(path, {maxBytes: SMALL_FILE_LIMIT})
  } catch (error) {
    throw badKey(
      `Cannot read the secret key ${path}: it ${readFailure(error)}`,
      'Pass --secret-key with the backup secret key (gpg --armor --export-secret-keys KEYID).',
      error,
    )
  }
  let key: openpgp.PrivateKey
  try {
    const text = bytes.toString('utf8')
    key = text.includes('-----BEGIN PGP')
      ? await openpgp.readPrivateKey({armoredKey: text})
      : await openpgp.readPrivateKey({binaryKey: new Uint8Array(bytes)})
  } catch (error) {
    throw badKey(
      `${path} is not an OpenPGP secret key`,
      'Export it with gpg --armor --export-secret-keys KEYID > backup-secret.asc.',
      error,
    )
  }
  if (key.isDecrypted()) return key
  if (!passphrase) {
    throw badKey(
      `The secret key ${path} is protected by a passphrase`,
      'Set CKAN_MIGRATE_SECRET_KEY_PASSPHRASE to its passphrase (never on the command line).',
    )
  }
  try {
    return await openpgp.decryptKey({passphrase: passphrase.reveal(), privateKey: key})
  } catch (error) {
    throw badKey(
      `Cannot unlock the secret key ${path}: wrong passphrase`,
      'Check CKAN_MIGRATE_SECRET_KEY_PASSPHRASE.',
      error,
    )
  }
}

/**
 * Decrypts a stream with OpenPGP.js. Plain data flows out before the integrity check at the end
 * (allowUnauthenticatedStream), which is why callers only ever pipe it into a reader and never
 * to disk: a tampered file makes the stream fail at its end, and the caller reports it.
 */
export async function decryptStream(cipher: Readable, key: openpgp.PrivateKey, file: string): Promise<Readable> {
  let message: openpgp.Message<ReadableStream<Uint8Array>>
  try {
    message = await openpgp.readMessage({binaryMessage: Readable.toWeb(cipher) as ReadableStream<Uint8Array>})
  } catch (error) {
    throw badKey(
      `${file} is not an OpenPGP message`,
      'Pass a backup file written by ckan-migrate backup (*.pgc.gpg or *.sql.gpg).',
      error,
    )
  }
  try {
    const {data} = await openpgp.decrypt({
      config: {allowUnauthenticatedStream: true},
      decryptionKeys: key,
      format: 'binary',
      message,
    })
    return Readable.fromWeb(data as import('node:stream/web').ReadableStream<Uint8Array>)
  } catch (error) {
    const recipients = message.getEncryptionKeyIDs().map((id) => id.toHex().toUpperCase())
    throw badKey(
      `This secret key cannot decrypt ${file} (${describeOpenpgpError(error)}; encrypted to ${recipients.join(', ') || 'an unknown key'})`,
      'Pass the secret key of the backup key the file name ends with.',
      error,
    )
  }
}

export function describeOpenpgpError(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error)
  return message.split('\n')[0]!.replace(/^Error (decrypting|encrypting) message:\s*/, '')
}
