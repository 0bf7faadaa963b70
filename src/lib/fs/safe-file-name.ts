import {createHash} from 'node:crypto'

/**
 * File names made from user names. CKAN user names are normally `[a-z0-9_-]{2,100}`, but a site's
 * database can hold anything (old imports, direct SQL): `../../etc/passwd`, `con`, `a/b\c`, tabs,
 * emoji. A file name from here:
 *
 * - uses only `a-z 0-9 _ - .`, never starts with `-` or `.`, holds no separator, control character
 *   or path step, and is never a Windows device name (`con`, `nul`, `com1`, … also with an extension);
 * - is at most 64 characters before the caller's suffix;
 * - is the user name itself when the name is already clean (lowercase `[a-z0-9][a-z0-9_-]*`, at most
 *   64 characters, not a device name), so most files are named exactly after their user;
 * - otherwise is a slug of the name, a dot, and the first hex digits of the SHA-256 of the name. A
 *   clean name never contains a dot, so a slugged name can never equal another user's clean name,
 *   even one chosen to look like it;
 * - is the same in every run for the same set of names (no counters, no order dependence), and
 *   distinct, also case-insensitively, across the whole set (`safeFileNames`).
 */
export const MAX_BASE_NAME_LENGTH = 64
const SLUG_LENGTH = 40
const CLEAN = /^[a-z0-9][a-z0-9_-]*$/
const WINDOWS_DEVICE = /^(?:con|prn|aux|nul|conin\$|conout\$|clock\$|com[0-9¹²³]|lpt[0-9¹²³])$/

function isWindowsDevice(name: string): boolean {
  const base = name.split('.')[0] ?? ''
  return WINDOWS_DEVICE.test(base.toLowerCase())
}

function hashOf(name: string, digits: number): string {
  return createHash('sha256').update(name, 'utf8').digest('hex').slice(0, digits)
}

/** A lowercase ASCII slug of any text: accents removed, everything else becomes `-`. */
export function slugOf(name: string): string {
  return name
    .normalize('NFKD')
    .replaceAll(/\p{M}/gu, '')
    .toLowerCase()
    .replaceAll(/[^a-z0-9_]+/g, '-')
    .replaceAll(/^[-_]+|[-_]+$/g, '')
    .slice(0, SLUG_LENGTH)
    .replaceAll(/[-_]+$/g, '')
}

/** The file name (without suffix) for one user name; `hashDigits` grows only to settle a collision. */
export function safeFileName(name: string, hashDigits = 8): string {
  if (name.length <= MAX_BASE_NAME_LENGTH && CLEAN.test(name) && !isWindowsDevice(name)) return name
  let slug = slugOf(name)
  if (slug === '') slug = 'user'
  if (isWindowsDevice(slug)) slug = `user-${slug}`
  return `${slug}.${hashOf(name, hashDigits)}`
}

/**
 * File names for a whole set of user names, distinct case-insensitively. When two slugged names
 * collide (the same slug and the same 8 hex digits), both get longer hashes; the result depends only
 * on the set, so reruns find the same files. Throws if names stay equal (cannot happen short of a
 * SHA-256 collision), so a bundle can never overwrite another user's.
 */
export function safeFileNames(names: Iterable<string>): Map<string, string> {
  const unique = [...new Set(names)]
  const result = new Map<string, string>()
  for (const name of unique) result.set(name, safeFileName(name))
  for (const digits of [16, 0]) {
    const colliding = collisions(result)
    if (colliding.length === 0) return result
    if (digits === 0) break
    // A clean name keeps its own name; only slugged names (with a dot) get the longer hash.
    for (const name of colliding) if (result.get(name)!.includes('.')) result.set(name, safeFileName(name, digits))
  }
  throw new Error('safeFileNames: could not make distinct file names')
}

function collisions(files: ReadonlyMap<string, string>): string[] {
  const owners = new Map<string, string[]>()
  for (const [name, file] of files) {
    const key = file.toLowerCase()
    owners.set(key, [...(owners.get(key) ?? []), name])
  }
  return [...owners.values()].filter((group) => group.length > 1).flat()
}
