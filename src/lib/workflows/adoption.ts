import {stat} from 'node:fs/promises'
import {join, resolve} from 'node:path'

import {type Queryable, readOnlyTransaction, withCkanDatabase} from '../site/ckan-database.js'
import {resolveSiteDatabase} from '../site/site-database.js'
import {EXIT_CODES, MigrateError} from '../errors.js'
import {type CsvColumn, neutraliseCell, writeCsvReport} from '../fs/csv-report.js'
import {JsonlFile} from '../run/jsonl-file.js'
import {openRunFolder, type RunFolder} from '../run/run-folder.js'
import {ckanUtc, type TokenHolder, tokenHolders} from '../run/token-lineage.js'
import {PASSWORDS_FILE, readPasswordsCsv} from '../bundle/passwords-csv.js'

export const ADOPTION_REPORT = 'adoption-report.csv'
/** First uses seen by earlier adoption checks (CKAN keeps only the latest): fingerprints and times, no secret. */
export const ADOPTION_SEEN = 'adoption-seen.jsonl'

export type AdoptionOptions = {
  /** Where `bundle` wrote passwords.csv (default: bundles/ in the run folder). */
  bundleDir?: string
  ckanIniPath?: string
  databaseUrl?: string
  env?: NodeJS.ProcessEnv
  now?: () => Date
  out: string
  /** --require: the share (0..100) of people who must have used their token. */
  requirePercent?: number
}

export type AdoptionStatus = 'expired' | 'not used' | 'revoked' | 'used'

export type AdoptionRow = {
  bundle: 'none' | 'outdated' | 'written'
  expiresAt: null | string
  /** Earliest use any adoption check of this run has seen (CKAN stores only the latest). */
  firstUse: null | string
  issuedAt: string
  kind: TokenHolder['kind']
  label: string
  lastUse: null | string
  legacyKey: 'absent' | 'present' | 'unknown'
  /** A rotation in its grace period: the predecessor still works. */
  predecessorLive: boolean
  state: string
  status: AdoptionStatus
  sysadmin: boolean | null
  tokenFingerprint: string
  tokenName: string
  userId: string
  userName: string
}

export type AdoptionResult = {
  counts: {
    /** People whose token is neither revoked nor expired, and have not used it. */
    notUsed: number
    notUsedSysadmins: number
    people: number
    /** Of `people`, minus those whose token was revoked (a rollback): the base of `percentUsed`. */
    peopleCounted: number
    expired: number
    legacyKeyPresent: number
    bundled: number
    revoked: number
    rotationsPending: number
    services: number
    servicesUsed: number
    used: number
  }
  /** used / peopleCounted × 100, one decimal; 100 when nobody is counted. */
  percentUsed: number
  /** A few people who have not used their token, for the summary (the report lists all). */
  notUsedSample: string[]
  reportPath: string
  /** --require: met or not (null without --require). */
  required: {met: boolean; percent: number} | null
  runId: string
  /** The people and services that have not used their token, in one sentence. */
  summary: string
}

type SeenRecord = {at: string; firstUse: string; jtiFingerprint: string}

type TokenRow = {created_at: null | string; exp: null | string; id: string; last_access: null | string}
type UserRow = {has_key: boolean; id: string; state: string; sysadmin: boolean}

const BATCH = 1000

const COLUMNS: ReadonlyArray<CsvColumn<AdoptionRow>> = [
  {header: 'user_id', value: (row) => row.userId},
  {header: 'name', value: (row) => row.userName},
  {header: 'kind', value: (row) => row.kind},
  {header: 'service', value: (row) => (row.kind === 'service' ? row.label : '')},
  {header: 'sysadmin', value: (row) => row.sysadmin},
  {header: 'state', value: (row) => row.state},
  {header: 'status', value: (row) => row.status},
  {header: 'token_name', value: (row) => row.tokenName},
  {header: 'token_id_fingerprint', value: (row) => row.tokenFingerprint},
  {header: 'issued_at', value: (row) => row.issuedAt},
  {header: 'first_use', value: (row) => row.firstUse},
  {header: 'last_use', value: (row) => row.lastUse},
  {header: 'expires_at', value: (row) => row.expiresAt},
  {header: 'bundle', value: (row) => row.bundle},
  {header: 'legacy_key', value: (row) => row.legacyKey},
  {header: 'rotation_pending', value: (row) => row.predecessorLive},
]

/**
 * Who has switched: for each holder of a token of the run (people and services), whether CKAN
 * has seen the token used (api_token.last_access, which CKAN sets on every authenticated request:
 * ckan/lib/api_token.py get_user_from_token → ApiToken.touch), leaving out ckan-migrate's own
 * `verify` calls, whether the legacy key is still there, and whether the token was revoked or has
 * expired. Reads the database only (the same columns on 2.9, 2.10 and 2.11); writes the CSV
 * report and the first uses it saw into the run folder, nothing anywhere else.
 */
export async function checkAdoption(options: AdoptionOptions): Promise<AdoptionResult> {
  const env = options.env ?? process.env
  const now = (options.now ?? (() => new Date()))()
  const run = await openRunFolder(options.out, {create: false})
  const holders = tokenHolders(await run.readTokens())
  if (holders.length === 0) {
    throw new MigrateError(`The run folder ${run.path} holds no tokens`, {
      exitCode: EXIT_CODES.badInput,
      suggestion: 'Pass the --out folder that issue-tokens wrote.',
    })
  }
  const {url} = await resolveSiteDatabase({ckanIniPath: options.ckanIniPath, databaseUrl: options.databaseUrl, env})
  const verifiedAt = await lastVerified(run)
  const bundles = await bundleTimes(resolve(options.bundleDir ?? run.file('bundles')))
  const seenFile = new JsonlFile<SeenRecord>(run.file(ADOPTION_SEEN))
  const seen = new Map((await seenFile.readAll()).map((record) => [record.jtiFingerprint, record.firstUse]))
  const newlySeen: SeenRecord[] = []

  const rows = await withCkanDatabase(url, {statementTimeoutMs: 120_000}, ({client}) =>
    readOnlyTransaction(client, async () => {
      const result: AdoptionRow[] = []
      {
        for (let index = 0; index < holders.length; index += BATCH) {
          const batch = holders.slice(index, index + BATCH)
          const {tokens, users} = await readBatch(client, batch)
          for (const holder of batch) {
            const token = holder.current
            const fingerprint = token.jti.fingerprint()
            const row = tokens.get(token.jti.reveal())
            const user = users.get(holder.userId)
            const lastAccess = ckanUtc(row?.last_access)
            const ours = verifiedAt.get(fingerprint)
            const lastUse = lastAccess && (!ours || lastAccess > ours) ? lastAccess : null
            let firstUse = seen.get(fingerprint) ?? null
            if (lastUse && !firstUse) {
              firstUse = lastUse
              newlySeen.push({at: now.toISOString(), firstUse, jtiFingerprint: fingerprint})
            }
            const expiresAt = ckanUtc(row?.exp) ?? token.expiresAt ?? null
            const status: AdoptionStatus =
              token.revokedAt || !row
                ? 'revoked'
                : expiresAt && expiresAt <= now.toISOString()
                  ? 'expired'
                  : lastUse
                    ? 'used'
                    : 'not used'
            const bundleAt = holder.kind === 'person' ? bundles.get(neutraliseCell(holder.userName)) : undefined
            result.push({
              bundle: bundleAt === undefined ? 'none' : bundleAt >= token.createdAt ? 'written' : 'outdated',
              expiresAt,
              firstUse,
              issuedAt: token.createdAt,
              kind: holder.kind,
              label: holder.label,
              lastUse,
              legacyKey: user ? (user.has_key ? 'present' : 'absent') : 'unknown',
              predecessorLive: holder.predecessor !== undefined,
              state: user?.state ?? 'deleted from the database',
              status,
              sysadmin: user ? user.sysadmin : null,
              tokenFingerprint: fingerprint,
              tokenName: token.tokenName,
              userId: holder.userId,
              userName: holder.userName,
            })
          }
        }
      }
      return result
    }),
  )
  if (newlySeen.length > 0) {
    await seenFile.append(...newlySeen)
    await seenFile.close()
  }
  rows.sort((a, b) => (a.kind === b.kind ? compare(a.label, b.label) : a.kind === 'person' ? -1 : 1))
  const reportPath = run.file(ADOPTION_REPORT)
  await writeCsvReport(reportPath, COLUMNS, rows)
  return summarise(rows, {reportPath, requirePercent: options.requirePercent, runId: run.meta.runId})
}

function summarise(
  rows: AdoptionRow[],
  context: {reportPath: string; requirePercent?: number; runId: string},
): AdoptionResult {
  const people = rows.filter((row) => row.kind === 'person')
  const services = rows.filter((row) => row.kind === 'service')
  const counted = people.filter((row) => row.status !== 'revoked')
  const used = people.filter((row) => row.status === 'used').length
  const notUsed = people.filter((row) => row.status === 'not used')
  const notUsedSysadmins = notUsed.filter((row) => row.sysadmin).length
  const percentUsed = counted.length === 0 ? 100 : Math.floor((used / counted.length) * 1000) / 10
  const servicesUsed = services.filter((row) => row.status === 'used').length
  const unused = counted.length - used
  const summary =
    `${used} of ${counted.length} users have used their token (${percentUsed}%); ${unused} have not` +
    (unused > 0 ? `, ${notUsedSysadmins} of them sysadmins` : '') +
    (services.length > 0 ? `. ${servicesUsed} of ${services.length} services have used theirs.` : '.')
  return {
    counts: {
      bundled: people.filter((row) => row.bundle === 'written').length,
      expired: people.filter((row) => row.status === 'expired').length,
      legacyKeyPresent: people.filter((row) => row.legacyKey === 'present').length,
      notUsed: notUsed.length,
      notUsedSysadmins,
      people: people.length,
      peopleCounted: counted.length,
      revoked: people.filter((row) => row.status === 'revoked').length,
      rotationsPending: rows.filter((row) => row.predecessorLive).length,
      services: services.length,
      servicesUsed,
      used,
    },
    notUsedSample: notUsed.slice(0, 10).map((row) => row.userName),
    percentUsed,
    reportPath: context.reportPath,
    required:
      context.requirePercent === undefined
        ? null
        : {met: percentUsed >= context.requirePercent, percent: context.requirePercent},
    runId: context.runId,
    summary,
  }
}

/**
 * --require: "95%", "95" or "99.5%" (a share of people, 0 to 100).
 */
export function parsePercent(value: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*%?\s*$/.exec(value)
  const percent = match ? Number(match[1]) : Number.NaN
  if (!(percent >= 0 && percent <= 100)) {
    throw new MigrateError(`--require ${JSON.stringify(value)} is not a percentage`, {
      exitCode: EXIT_CODES.badInput,
      suggestion: 'Pass a share of users from 0 to 100, e.g. --require 95%.',
    })
  }
  return percent
}

async function readBatch(
  client: Queryable,
  batch: TokenHolder[],
): Promise<{tokens: Map<string, TokenRow>; users: Map<string, UserRow>}> {
  // Timestamps as text: they are naive UTC in CKAN (ApiToken.touch uses datetime.utcnow), and
  // node-postgres would read them as local time.
  const stamp = (column: string) => `to_char(${column}, 'YYYY-MM-DD"T"HH24:MI:SS.US')`
  const tokens = await client.query<TokenRow>(
    `SELECT id, ${stamp('created_at')} AS created_at, ${stamp('last_access')} AS last_access,
            plugin_extras->'expire_api_token'->>'exp' AS exp
     FROM api_token WHERE id = ANY($1::text[])`,
    [batch.map((holder) => holder.current.jti.reveal())],
  )
  const users = await client.query<UserRow>(
    `SELECT id, state, sysadmin, (apikey IS NOT NULL AND apikey <> '') AS has_key FROM "user" WHERE id = ANY($1::text[])`,
    [[...new Set(batch.map((holder) => holder.userId))]],
  )
  return {
    tokens: new Map(tokens.rows.map((row) => [row.id, row])),
    users: new Map(users.rows.map((row) => [row.id, row])),
  }
}

/** When ckan-migrate's own `verify` last used each token (by fingerprint): those uses are not the user's. */
export async function lastVerified(run: RunFolder): Promise<Map<string, string>> {
  const at = new Map<string, string>()
  for await (const entry of run.journal.stream()) {
    if (entry.kind !== 'token-verified') continue
    const known = at.get(entry.jtiFingerprint)
    if (!known || known < entry.at) at.set(entry.jtiFingerprint, entry.at)
  }
  return at
}

/** The people passwords.csv lists, with their bundle's modification time (the user cell as written). */
async function bundleTimes(bundleDir: string): Promise<Map<string, string>> {
  const listed = await readPasswordsCsv(join(bundleDir, PASSWORDS_FILE))
  const times = new Map<string, string>()
  for (const [user, row] of listed) {
    const info = await stat(join(bundleDir, row.file.replace(/^'/, ''))).catch(() => undefined)
    if (info) times.set(user, info.mtime.toISOString())
  }
  return times
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}
