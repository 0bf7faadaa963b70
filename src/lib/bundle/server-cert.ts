import {X509Certificate} from 'node:crypto'
import {isIP} from 'node:net'
import {connect, type DetailedPeerCertificate} from 'node:tls'

import {EXIT_CODES, MigrateError} from '../errors.js'
import {readFailure, readInputText, SMALL_FILE_LIMIT} from '../fs/input-file.js'

/**
 * The `server.cert` of a bundle: one or more PEM certificates, the server's own first. DCOR-Aid and
 * dclab pin it (`requests` `verify=`) and DCOR-Aid takes the server's host name from the first
 * certificate's subject CN (not its SAN), so the CN must be the host users connect to.
 */
export type ServerCert = {
  /** The chain as PEM blocks, server certificate first, each ending in a newline. */
  pem: string
  /** Details of the first certificate, for output; nothing here is secret. */
  subject: {
    cn: string | undefined
    fingerprint256: string
    validTo: string
  }
  /** Number of certificates in the chain. */
  count: number
  source: string
  warnings: string[]
}

const NETWORK_ERRORS = new Set([
  'EADDRNOTAVAIL',
  'EAI_AGAIN',
  'ECONNREFUSED',
  'ECONNRESET',
  'EHOSTDOWN',
  'EHOSTUNREACH',
  'ENETDOWN',
  'ENETUNREACH',
  'ENOTFOUND',
  'ETIMEDOUT',
])
const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n([\s\S]*?)-----END \1-----/g

function badCert(message: string, suggestion: string, cause?: unknown): MigrateError {
  return new MigrateError(message, {cause, exitCode: EXIT_CODES.badInput, suggestion})
}

/** Parses PEM text that must hold CERTIFICATE blocks only (never a private key). */
export function parseServerCertPem(text: string, source: string): X509Certificate[] {
  const blocks = [...text.matchAll(PEM_BLOCK)]
  const kinds = new Set(blocks.map((block) => block[1]))
  if ([...kinds].some((kind) => kind?.includes('PRIVATE KEY'))) {
    throw badCert(
      `${source} holds a private key; it must never go into a bundle`,
      'Pass a file with only the server certificate(s): the -----BEGIN CERTIFICATE----- blocks.',
    )
  }
  const certificates: X509Certificate[] = []
  for (const [index, block] of blocks.entries()) {
    if (block[1] !== 'CERTIFICATE') continue
    try {
      certificates.push(new X509Certificate(block[0]))
    } catch (error) {
      throw badCert(
        `${source}: certificate ${index + 1} is not a valid X.509 certificate`,
        'Pass the PEM file the web server uses (e.g. /etc/ssl/certs/<host>.cert).',
        error,
      )
    }
  }
  if (certificates.length === 0) {
    throw badCert(
      `${source} is not a PEM certificate (no -----BEGIN CERTIFICATE----- block)`,
      'Pass the PEM file the web server uses, or use --fetch-cert to take it from the server. DER files: openssl x509 -inform der -in FILE -out FILE.pem',
    )
  }
  return certificates
}

export type HostCheck = {
  /** --allow-cert-host-mismatch: a CN other than the host is intended (a warning, not a refusal). */
  allowHostMismatch?: boolean
}

/** Reads --server-cert FILE; refuses (exit 15) a certificate whose CN is not `host`, unless allowed. */
export async function readServerCert(
  path: string,
  host: string | undefined,
  check: HostCheck = {},
): Promise<ServerCert> {
  let text: string
  try {
    text = await readInputText(path, {maxBytes: SMALL_FILE_LIMIT})
  } catch (error) {
    throw badCert(
      `Cannot read the server certificate ${path}: it ${readFailure(error)}`,
      'Pass --server-cert with the PEM file of the site, or use --fetch-cert with --ckan-url.',
      error,
    )
  }
  return describeChain(parseServerCertPem(text, path), path, host, [], check)
}

/** The subject CN of a certificate, if it has one. */
export function commonNameOf(certificate: X509Certificate): string | undefined {
  for (const line of certificate.subject.split('\n')) if (line.startsWith('CN=')) return line.slice(3).trim()
  return undefined
}

/**
 * DCOR-Aid takes the server's host from the first certificate's subject CN, so a CN other than the
 * host users connect to sends every bundle's user elsewhere: refused with exit 15 (tlsFailure, "a
 * certificate for another host"), or a warning with --allow-cert-host-mismatch.
 */
function describeChain(
  certificates: X509Certificate[],
  source: string,
  host: string | undefined,
  warnings: string[],
  check: HostCheck,
): ServerCert {
  const first = certificates[0]!
  const cn = commonNameOf(first)
  if (host !== undefined && cn?.toLowerCase() !== host.toLowerCase()) {
    const sanMatches = (isIP(host) ? first.checkIP(host) : first.checkHost(host)) !== undefined
    const mismatch = `The server certificate's CN is ${cn === undefined ? 'missing' : JSON.stringify(cn)}, not ${host}${sanMatches ? ' (its SAN matches, but DCOR-Aid reads only the CN)' : ''}`
    if (!check.allowHostMismatch) {
      throw new MigrateError(
        `${mismatch}: DCOR-Aid takes the server from the CN, so these bundles would send users ${cn === undefined ? 'nowhere' : `to ${cn}`}`,
        {
          exitCode: EXIT_CODES.tlsFailure,
          suggestion: `Pass the certificate whose CN is ${host} (or --ckan-url with the host users connect to); add --allow-cert-host-mismatch only if ${cn === undefined ? 'that is intended' : `users really connect to ${cn}`}.`,
        },
      )
    }
    warnings.push(
      `${mismatch}: with --allow-cert-host-mismatch, these bundles send users ${cn === undefined ? 'to no host DCOR-Aid can use' : `to ${cn}`}.`,
    )
  }
  const now = Date.now()
  if (Date.parse(first.validTo) < now)
    warnings.push(`The server certificate expired on ${first.validTo}: clients pinning it will refuse the site.`)
  if (Date.parse(first.validFrom) > now) warnings.push(`The server certificate is not valid before ${first.validFrom}.`)
  return {
    count: certificates.length,
    pem: certificates.map((certificate) => `${certificate.toString().trim()}\n`).join(''),
    source,
    subject: {cn, fingerprint256: first.fingerprint256, validTo: first.validTo},
    warnings,
  }
}

export type FetchServerCertOptions = HostCheck & {
  ckanUrl: URL
  signal?: AbortSignal
  timeoutMs: number
  /** Where ckanUrl came from when the user did not give it (e.g. "the run's site, from run.json"). */
  urlFrom?: string
}

/**
 * --fetch-cert: the chain the server presents in a TLS handshake with --ckan-url, as PEM. The
 * handshake does not verify the chain (a self-signed DCOR certificate is the normal case), so the
 * result says whether a trusted CA vouches for it and shows its SHA-256 fingerprint to compare.
 */
export async function fetchServerCert(options: FetchServerCertOptions): Promise<ServerCert> {
  const {ckanUrl} = options
  if (ckanUrl.protocol !== 'https:') {
    // Exit 7 (bad input: the flags ask for something that does not exist), not 15: no TLS was tried.
    const scheme = ckanUrl.protocol.replace(/:$/, '')
    throw badCert(
      `--fetch-cert: ${ckanUrl.origin}${options.urlFrom ? ` (${options.urlFrom})` : ''} is plain ${scheme}://, which has no TLS certificate to fetch`,
      "Pass --ckan-url with the site's https:// address, or --server-cert FILE with the certificate users should pin (DCOR-Aid connects over HTTPS only).",
    )
  }
  const host = ckanUrl.hostname.replace(/^\[|\]$/g, '')
  const port = Number(ckanUrl.port || 443)
  const where = `${host}:${port}`
  const {authorizationError, chain} = await new Promise<{
    authorizationError: string | undefined
    chain: X509Certificate[]
  }>((resolve, reject) => {
    const socket = connect({
      host,
      port,
      rejectUnauthorized: false,
      ...(/^[\d.]+$|:/.test(host) ? {} : {servername: host}),
      timeout: options.timeoutMs,
    })
    const onAbort = () => {
      socket.destroy()
      reject(new MigrateError('Interrupted', {exitCode: EXIT_CODES.interrupted}))
    }
    options.signal?.addEventListener('abort', onAbort, {once: true})
    socket.once('close', () => options.signal?.removeEventListener('abort', onAbort))
    socket.once('secureConnect', () => {
      const peer = socket.getPeerCertificate(true)
      const error = socket.authorized ? undefined : String(socket.authorizationError ?? 'not trusted')
      socket.end()
      resolve({authorizationError: error, chain: chainOf(peer)})
    })
    socket.once('timeout', () => {
      socket.destroy()
      reject(unreachable(where, 'timed out', undefined))
    })
    socket.once('error', (error: NodeJS.ErrnoException) => {
      socket.destroy()
      if (NETWORK_ERRORS.has(error.code ?? '')) reject(unreachable(where, error.code!, error))
      else {
        reject(
          new MigrateError(`TLS handshake with ${where} failed: ${error.code ?? error.message.split('\n')[0]}`, {
            cause: error,
            exitCode: EXIT_CODES.tlsFailure,
            suggestion: 'Check that --ckan-url is the HTTPS address of the site, or pass --server-cert FILE.',
          }),
        )
      }
    })
  })
  if (chain.length === 0) {
    throw new MigrateError(`${where} presented no certificate`, {
      exitCode: EXIT_CODES.tlsFailure,
      suggestion: 'Pass --server-cert FILE with the site certificate.',
    })
  }
  const warnings: string[] = []
  if (authorizationError) {
    warnings.push(
      `No trusted CA vouches for the certificate of ${where} (${authorizationError}); check its SHA-256 fingerprint ${chain[0]!.fingerprint256} against the server before sending bundles.`,
    )
  }
  return describeChain(chain, `TLS handshake with ${where}`, host, warnings, options)
}

function unreachable(where: string, reason: string, cause: unknown): MigrateError {
  return new MigrateError(`Cannot reach ${where} to fetch its certificate: ${reason}`, {
    cause,
    exitCode: EXIT_CODES.ckanUnreachable,
    suggestion: 'Check --ckan-url and the network path, or pass --server-cert FILE instead of --fetch-cert.',
  })
}

/** Walks getPeerCertificate(true) from the server's certificate up to the last issuer. */
function chainOf(peer: DetailedPeerCertificate): X509Certificate[] {
  const chain: X509Certificate[] = []
  const seen = new Set<string>()
  let current: DetailedPeerCertificate | undefined = peer
  while (current?.raw && !seen.has(current.fingerprint256)) {
    seen.add(current.fingerprint256)
    chain.push(new X509Certificate(current.raw))
    current = current.issuerCertificate
  }
  return chain
}
