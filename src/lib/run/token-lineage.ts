import type {RunToken} from './run-folder.js'

/**
 * One holder of tokens of a run: a person (issue-tokens' tokens, keyed by user id) or a service
 * (rewrite-config's, keyed by service name), with the token they should be using now.
 */
export type TokenHolder = {
  /** The newest token of the holder that is not revoked and has no stored successor (else the newest). */
  current: RunToken
  /** 'user:<id>' or 'service:<name>'. */
  key: string
  kind: 'person' | 'service'
  /** User name, or service name for a service. */
  label: string
  /**
   * The live token `current` succeeds (`rotate` stored a successor, `rotate --finish` has not
   * revoked the predecessor yet): a rotation in its grace period.
   */
  predecessor?: RunToken
  userId: string
  userName: string
}

/**
 * Groups a run's tokens by holder and follows each holder's rotations (a successor names its
 * predecessor's jti): every command that asks "which token does this user use now" asks here.
 */
export function tokenHolders(tokens: Iterable<RunToken>): TokenHolder[] {
  const groups = new Map<string, RunToken[]>()
  for (const token of tokens) {
    const key = holderKey(token)
    const group = groups.get(key)
    if (group) group.push(token)
    else groups.set(key, [token])
  }
  const holders: TokenHolder[] = []
  for (const [key, group] of groups) {
    const superseded = new Set(group.flatMap((token) => (token.predecessorJti ? [token.predecessorJti.reveal()] : [])))
    const byJti = new Map(group.map((token) => [token.jti.reveal(), token]))
    // Store order is creation order: the last live token without a successor is the one in use.
    const live = group.filter((token) => !token.revokedAt && !superseded.has(token.jti.reveal()))
    const current = live.at(-1) ?? group.at(-1)!
    const before = current.predecessorJti ? byJti.get(current.predecessorJti.reveal()) : undefined
    const service = current.source === 'rewrite-config' ? current.service : undefined
    holders.push({
      current,
      key,
      kind: service ? 'service' : 'person',
      label: service ?? current.userName,
      ...(before && !before.revokedAt && !current.revokedAt ? {predecessor: before} : {}),
      userId: current.userId,
      userName: current.userName,
    })
  }
  return holders
}

function holderKey(token: RunToken): string {
  return token.source === 'rewrite-config' && token.service ? `service:${token.service}` : `user:${token.userId}`
}

/** CKAN's naive UTC timestamps ('2026-11-22 03:56:49.625661' or with a T) as an ISO instant; null stays null. */
export function ckanUtc(value: null | string | undefined): null | string {
  if (value === null || value === undefined || value === '') return null
  if (/[zZ]$|[+-]\d\d:?\d\d$/.test(value)) return new Date(value).toISOString()
  const date = new Date(`${value.replace(' ', 'T')}Z`)
  return Number.isNaN(date.getTime()) ? null : date.toISOString()
}
