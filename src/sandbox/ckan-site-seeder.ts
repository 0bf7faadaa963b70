import type {Queryable} from '../lib/site/ckan-database.js'
import {CKAN_RELEASES, type CkanVersion} from '../lib/site/ckan-version.js'

/**
 * When the seeded site left CKAN 2.8 for 2.9. Until then CKAN gave every new user a legacy key
 * (`ckan-2.8.12:ckan/model/user.py`: `Column('apikey', …, default=_types.make_uuid)`); from 2.9.0 on
 * a new user gets one only with `ckan.auth.create_default_api_keys = true` (`set_api_key`,
 * `ckan-2.9.11:ckan/model/user.py`; the default is false). So the seeded key holders are users
 * from before this date (plus the site user, whom get_site_user always gives one).
 */
export const SEEDED_UPGRADE_TO_29 = '2021-03-01'

export type SeedOptions = {
  /** Legacy key of the `admin` sysadmin; derived from the seed when absent. */
  adminApiKey?: string
  /**
   * `ckan.auth.create_default_api_keys` of the seeded site since its move to 2.9 (default false,
   * CKAN's default): true gives the users created since a legacy key too.
   */
  createDefaultApiKeys?: boolean
  /** Adds harvest sources (the harvest_source table must exist). */
  harvestSources?: boolean
  /** Any text; the same seed gives the same site, row for row. */
  seed: string
  /** Name of the site user (ckan.site_id). */
  siteId: string
  /** Total number of users, including the site user, `admin` and the hostile-name users. */
  users: number
  version: CkanVersion
}

export type SeedResult = {
  adminName: string
  /** Which site the seed models, in numbers (see describeSeededSite). */
  history: {
    /** Users created since the move to 2.9 (SEEDED_UPGRADE_TO_29). */
    createdOn29: number
    /** Of those, the ones holding a legacy key (only with createDefaultApiKeys). */
    createdOn29WithKey: number
    /** Users from CKAN ≤ 2.8 (the site user included) holding a legacy key. */
    keyHoldersFrom28: number
  }
  siteUserName: string
  users: number
}

/**
 * Users whose names and full names try to break things downstream: spreadsheets (CSV formula
 * injection), file names (path traversal, reserved names), encodings. CKAN's own validators
 * would refuse most of these names, but databases migrated from old sites hold stranger things.
 */
export const HOSTILE_USERS: ReadonlyArray<{fullname: string; name: string}> = [
  {fullname: '=HYPERLINK("http://x")', name: '=hyperlink("http://x")'},
  {fullname: '../../etc/passwd', name: '../../etc/passwd'},
  {fullname: "+cmd|' /C calc'!A0", name: '+cmd'},
  {fullname: "@SUM(1+1)*cmd|' /C calc'!A0", name: '@sum'},
  {fullname: '-2+3', name: '-2+3'},
  {fullname: 'Zoë Ångström-Jørgensen 山田太郎 🚀', name: 'zoë-ångström'},
  {fullname: 'x'.repeat(300), name: 'con'},
  {fullname: 'tab\there', name: 'tab\tname'},
  {fullname: 'line\r\nbreak', name: 'a/b\\c'},
]

const FAKE_PASSWORD_HASH = '$pbkdf2-sha512$25000$c2FuZGJveA$not-a-real-password-hash'

/** A UUID (the legacy-key format) derived from text by md5, in SQL. */
const uuidFrom = (expression: string) =>
  `(substr(${expression},1,8)||'-'||substr(${expression},9,4)||'-4'||substr(${expression},14,3)||'-a'||substr(${expression},18,3)||'-'||substr(${expression},21,12))`

/**
 * Fills an empty CKAN schema with a deterministic, realistic site: about 40 % of users hold a
 * legacy key, active/pending/deleted users, sysadmins, users without email, duplicate emails
 * among active users (2.9 only: 2.10's unique index forbids them), unicode and hostile names,
 * keys that are not UUIDs and duplicated keys, existing tokens, and harvest sources holding a
 * remote api_key. Everything is generated inside PostgreSQL, so a million users take seconds.
 */
export async function seedCkanSite(sql: Queryable, options: SeedOptions): Promise<SeedResult> {
  const seed = options.seed
  const adminKey = options.adminApiKey ?? null
  const fixed = 2 + HOSTILE_USERS.length
  const generated = Math.max(0, options.users - fixed)
  const allowDuplicateEmails = options.version === '2.9'
  const createDefaultApiKeys = options.createDefaultApiKeys === true

  await sql.query(
    `INSERT INTO "user" (id, name, apikey, created, password, fullname, email, sysadmin, state)
     VALUES (${uuidFrom(`md5($1 || ':site')`)}, $2, ${uuidFrom(`md5($1 || ':site-key')`)},
             timestamp '2014-12-31 23:00:00', $3, NULL, NULL, true, 'active'),
            (${uuidFrom(`md5($1 || ':admin')`)}, 'admin', coalesce($4, ${uuidFrom(`md5($1 || ':admin-key')`)}),
             timestamp '2014-12-31 23:30:00', $3, 'Site Administrator', 'admin@example.org', true, 'active')`,
    [seed, options.siteId, FAKE_PASSWORD_HASH, adminKey],
  )
  for (const [index, user] of HOSTILE_USERS.entries()) {
    await sql.query(
      `INSERT INTO "user" (id, name, apikey, created, password, fullname, email, sysadmin, state)
       VALUES (${uuidFrom(`md5($1 || ':hostile:' || $2)`)}, $3, ${uuidFrom(`md5($1 || ':hostile-key:' || $2)`)},
               timestamp '2015-01-01 00:00:00', $4, $5, $6, false, 'active')`,
      [seed, String(index), user.name, FAKE_PASSWORD_HASH, user.fullname, `hostile${index}@example.org`],
    )
  }

  if (generated > 0) {
    await sql.query(
      `INSERT INTO "user" (id, name, apikey, created, password, fullname, email, sysadmin, state, about)
       SELECT ${uuidFrom('k')},
              'user-' || i,
              CASE WHEN r_key < 400 THEN ${uuidFrom('a')}
                   WHEN r_key < 403 THEN 'legacy-' || substr(a, 1, 20)
                   WHEN r_key < 405 THEN ${uuidFrom(`md5($1 || ':dup-key:' || (i % 7))`)}
                   WHEN $5 THEN ${uuidFrom('a')}
                   ELSE NULL END,
              -- Key holders joined under CKAN <= 2.8 (which gave everyone a key); the others since the
              -- move to 2.9, which gives none unless ckan.auth.create_default_api_keys is on.
              CASE WHEN r_key < 405 THEN timestamp '2015-01-01 00:00:00'
                   ELSE $6::timestamp END + i * interval '1 minute',
              $3,
              CASE WHEN r_name < 10 THEN 'Zoë Ångström-Jørgensen ' || i
                   WHEN r_name < 12 THEN repeat('Ł', 300)
                   WHEN r_name < 14 THEN '=HYPERLINK("http://x/' || i || '")'
                   WHEN r_name < 300 THEN NULL
                   ELSE 'User ' || i END,
              CASE WHEN r_email < 50 THEN NULL
                   WHEN $4 AND r_email < 60 AND r_state < 900 THEN 'shared-' || (i % 11) || '@example.org'
                   ELSE 'user-' || i || '@example.org' END,
              r_admin < 5,
              CASE WHEN r_state < 900 THEN 'active' WHEN r_state < 950 THEN 'pending' ELSE 'deleted' END,
              NULL
       FROM (
         SELECT i, h, md5($1 || ':id:' || i) AS k, md5($1 || ':key:' || i) AS a,
                ('x' || substr(h, 1, 4))::bit(16)::int % 1000 AS r_state,
                ('x' || substr(h, 5, 4))::bit(16)::int % 1000 AS r_key,
                ('x' || substr(h, 9, 4))::bit(16)::int % 1000 AS r_admin,
                ('x' || substr(h, 13, 4))::bit(16)::int % 1000 AS r_email,
                ('x' || substr(h, 17, 4))::bit(16)::int % 1000 AS r_name
         FROM (SELECT i, md5($1 || ':' || i) AS h FROM generate_series(1, $2::int) AS i) AS g
       ) AS r`,
      [seed, generated, FAKE_PASSWORD_HASH, allowDuplicateEmails, createDefaultApiKeys, SEEDED_UPGRADE_TO_29],
    )
    // Existing tokens: about one in eight key holders made one already; half never used it.
    await sql.query(
      `INSERT INTO api_token (id, name, user_id, created_at, last_access)
       SELECT rtrim(translate(encode(sha256(convert_to($1 || ':jti:' || u.id, 'UTF8')), 'base64'), '+/', '-_'), '='),
              'existing-token', u.id, u.created + interval '1 day',
              CASE WHEN get_byte(sha256(convert_to($1 || ':use:' || u.id, 'UTF8')), 0) < 128
                   THEN u.created + interval '2 days' ELSE NULL END
       FROM "user" u
       WHERE u.name LIKE 'user-%' AND u.apikey IS NOT NULL
         AND get_byte(sha256(convert_to($1 || ':tok:' || u.id, 'UTF8')), 0) < 32`,
      [seed],
    )
  }

  if (options.harvestSources) {
    await sql.query(
      `INSERT INTO harvest_source (id, url, title, description, config, created, type, active, user_id, frequency)
       SELECT ${uuidFrom(`md5($1 || ':harvest:' || i)`)}, 'https://remote' || i || '.example.org/', 'Remote portal ' || i, '',
              CASE WHEN i % 2 = 1 THEN '{"api_key": "' || ${uuidFrom(`md5($1 || ':remote-key:' || i)`)} || '", "default_tags": ["x"]}'
                   WHEN i % 3 = 0 THEN NULL
                   ELSE '{"default_groups": ["g"]}' END,
              timestamp '2018-01-01', 'ckan', true, '', 'WEEKLY'
       FROM generate_series(1, 6) AS i`,
      [seed],
    )
  }
  await sql.query('ANALYZE "user"')
  await sql.query('ANALYZE api_token')
  const counts = (
    await sql.query<{created_on_29: number; created_on_29_with_key: number; key_holders_from_28: number}>(
      `SELECT (count(*) FILTER (WHERE created >= $1::timestamp))::int AS created_on_29,
              (count(*) FILTER (WHERE created >= $1::timestamp AND apikey IS NOT NULL))::int AS created_on_29_with_key,
              (count(*) FILTER (WHERE created < $1::timestamp AND apikey IS NOT NULL))::int AS key_holders_from_28
       FROM "user"`,
      [SEEDED_UPGRADE_TO_29],
    )
  ).rows[0]!
  return {
    adminName: 'admin',
    history: {
      createdOn29: counts.created_on_29,
      createdOn29WithKey: counts.created_on_29_with_key,
      keyHoldersFrom28: counts.key_holders_from_28,
    },
    siteUserName: options.siteId,
    users: fixed + generated,
  }
}

/**
 * The seeded site in one sentence, for the sandbox's output: which CKAN it runs, and why its
 * users hold the keys they hold.
 */
export function describeSeededSite(version: CkanVersion, result: SeedResult, createDefaultApiKeys = false): string {
  const {createdOn29, createdOn29WithKey, keyHoldersFrom28} = result.history
  const path = version === '2.9' ? '' : ` and later upgraded to ${CKAN_RELEASES[version]}`
  const since = createDefaultApiKeys
    ? `${createdOn29} created since, ${createdOn29WithKey} of them with a key (ckan.auth.create_default_api_keys = true)`
    : `${createdOn29} created since hold none (ckan.auth.create_default_api_keys = false, CKAN's default)`
  return `a site that ran CKAN <= 2.8 until ${SEEDED_UPGRADE_TO_29}, then ${CKAN_RELEASES['2.9']}${path}: ${keyHoldersFrom28} users from before then (the site user included) hold legacy keys, ${since}`
}
