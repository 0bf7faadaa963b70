import type {CkanApiClient} from '../site/ckan-api-client.js'
import {EXIT_CODES, MigrateError} from '../errors.js'
import type {RunFolder, RunToken} from './run-folder.js'

/**
 * --allow-other-url (a staged upgrade: the run's site restored or upgraded at another host or
 * port): the URL changes, what survives the upgrade does not. The site is the run's when what the
 * caller could check says so: its site user (ckan.site_id) is the one run.json recorded, a token
 * of the run is in its api_token table (a sysadmin's api_token_list), or a token of the run is
 * accepted there (verify, which has no sysadmin credential). Refuses when nothing proves it or
 * anything contradicts it; otherwise journals the new address (unless `record` is false: a dry run).
 */
export async function confirmSiteElsewhere(input: {
  command: string
  record: boolean
  run: RunFolder
  /** The site user's name there (get_site_user). */
  siteUserName?: string
  /** A sysadmin's client there: the run's first live token must be in api_token_list. */
  sysadmin?: CkanApiClient
  /** verify: whether a token of the run is accepted there (undefined: no token to try). */
  tokenAccepted?: boolean
  tokens: readonly RunToken[]
}): Promise<void> {
  const {run} = input
  if (!run.otherUrl) return
  const recorded = run.meta.site
  const refuse = (why: string) =>
    new MigrateError(`${run.otherUrl} is not the site of the run folder ${run.path} (${recorded.ckanUrl}): ${why}`, {
      exitCode: EXIT_CODES.runConflict,
      suggestion:
        "With --allow-other-url, point --ckan-url at a copy of this run's site (its database restored or upgraded), or use a new --out folder for another site.",
    })
  const evidence: string[] = []
  if (input.siteUserName !== undefined && recorded.siteUserName) {
    if (input.siteUserName !== recorded.siteUserName)
      throw refuse(`its site user is ${input.siteUserName}, not ${recorded.siteUserName}`)
    evidence.push(`site user ${recorded.siteUserName}`)
  }
  const live = input.tokens.find((token) => !token.revokedAt)
  if (live && input.sysadmin) {
    const listed = await input.sysadmin.listApiTokens(live.userId)
    if (!listed.some((row) => row.id.reveal() === live.jti.reveal()))
      throw refuse(`it does not hold the run's token of ${live.userName}`)
    evidence.push(`it holds the run's token of ${live.userName}`)
  }
  if (live && input.tokenAccepted !== undefined) {
    if (!input.tokenAccepted) throw refuse('it does not accept the run’s tokens')
    evidence.push('it accepts the run’s tokens')
  }
  if (evidence.length === 0) throw refuse('nothing the run knows (its site user, its tokens) could be checked there')
  if (input.record)
    await run.record({
      ckanUrl: run.otherUrl,
      command: input.command,
      evidence: evidence.join('; '),
      kind: 'site-url-allowed',
      recordedUrl: recorded.ckanUrl,
    })
}
