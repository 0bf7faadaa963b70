import type {CkanApiClient, CkanStatus} from '../site/ckan-api-client.js'
import {CkanIni, parseIniText, readCkanIni} from '../site/ckan-ini.js'
import {effectiveSetting, envvarsKey, envvarsName, resolveJwtSecret} from '../site/ckan-settings.js'
import {credentialKind, readCredential} from '../site/credential.js'
import {EXIT_CODES, MigrateError} from '../errors.js'
import {editEnvFile, parseEnvValue} from '../services/env-file-editor.js'
import {editIni, escapeIniValue, splitLines} from '../services/ini-editor.js'
import {openRunFolder, type RunFolder} from '../run/run-folder.js'
import {unifiedDiff} from '../services/unified-diff.js'
import {Secret} from '../secret.js'
import {TokenIssuer, type UserOutcome} from '../run/token-issuer.js'
import {DEFAULT_TOKEN_NAME, serviceTokenName} from '../run/token-name.js'
import {preflightSite} from '../site/site-preflight.js'
import type {TokenHeader} from '../site/token-header.js'
import {
  assertReplaceable,
  assertUnchanged,
  type ConfigFile,
  lockConfigFile,
  readConfigFile,
  replaceConfigFile,
  writeBackup,
} from '../services/config-file-writer.js'
import {configLineRedactor, NEW_TOKEN_PLACEHOLDER} from '../fs/redaction.js'
import {exposureWarning} from '../services/file-exposure.js'
import {
  normaliseServiceName,
  SERVICE_CATALOG,
  selectServices,
  type ServiceDefinition,
} from '../services/service-catalog.js'
import {type CkanVersion, iniCaseRule, versionOfRelease} from '../site/ckan-version.js'

export type ChainTarget = 'defining' | 'top'

export type RewriteConfigOptions = {
  /** Other nodes' copies of ckan.ini: the same change is applied to each. */
  alsoPaths: readonly string[]
  /** Where a key of a `use = config:` chain is written: the file defining it (default) or the top file. */
  chainTarget: ChainTarget
  /**
   * The action API, needed to create tokens and to check the service user: checked first by the
   * same preflight as issue-tokens (the API answers, the credential is a sysadmin's).
   */
  api?: {apiKeyFile?: string; caCertPath?: string; ckanUrl: URL; headerName?: string; timeoutMs?: number}
  ckanIniPath?: string
  dryRun: boolean
  /** Environment CKAN runs with, for overrides (process.env by default). */
  env?: NodeJS.ProcessEnv
  envFilePaths: readonly string[]
  fixHeader: boolean
  now?: () => Date
  /** Test seam: runs just before a file is renamed into place. */
  onBeforeReplace?: (path: string) => Promise<void>
  onStep?: (step: string) => void
  out?: string
  /** Services named with --service (default: those whose plugin is enabled). */
  services: readonly string[]
  /** The account the service tokens belong to (default: the site user, ckan.site_id). */
  serviceUser?: string
  /** --token-file values: FILE (one token for every service) or SERVICE=FILE. */
  tokenFiles: readonly string[]
  /** Lifetime of created tokens when expire_api_token is enabled. */
  tokenLifetimeDays: number
}

export type TokenSource = 'created' | 'kept' | 'reused' | 'token-file' | 'would-create'

export type ServicePlan = {
  configKey: string
  envName: string
  service: string
  /** First 8 hex of the token's SHA-256 (null before it exists). */
  tokenFingerprint: string | null
  tokenName: string | null
  tokenSource: TokenSource
  user: string | null
}

export type FileChange = {action: 'append' | 'insert-after-comment' | 'replace'; line: number; setting: string}

export type FilePlan = {
  backupPath: string | null
  changes: FileChange[]
  /** The unified diff with every secret value shown as ***(fingerprint). */
  diff: string
  kind: 'env' | 'ini'
  path: string
  status: 'changed' | 'unchanged' | 'would-change'
}

export type RewriteConfigResult = {
  ckanVersion: CkanVersion
  dryRun: boolean
  files: FilePlan[]
  header: {apikeyHeaderName: string | null; fixed: boolean}
  nothingToChange: boolean
  runFolder: string | null
  /** Keys pinned to the literal JWT secret, and where its value came from (never the value). */
  secretPinning: {from: string; keys: string[]} | null
  services: ServicePlan[]
  warnings: string[]
}

type Setting = {key: string; secret: boolean; value: string}

type TargetEdit = {file: ConfigFile; kind: 'env' | 'ini'; settings: Setting[]}

type PlannedFile = {changes: FileChange[]; edit: TargetEdit; newText: string}

const JWT_ENCODE = 'api_token.jwt.encode.secret'
const JWT_DECODE = 'api_token.jwt.decode.secret'

/** Gives each service its own token in ckan.ini and env files, touching nothing else. */
export async function rewriteServiceConfigs(options: RewriteConfigOptions): Promise<RewriteConfigResult> {
  const env = options.env ?? process.env
  const now = options.now ?? (() => new Date())
  const warnings: string[] = []
  const step = options.onStep ?? (() => {})
  if (!options.ckanIniPath && options.envFilePaths.length === 0) {
    throw new MigrateError('Nothing to rewrite: no --ckan-ini and no --env-file', {
      exitCode: EXIT_CODES.badInput,
      suggestion: 'Pass --ckan-ini /etc/ckan/default/ckan.ini and/or --env-file .env.',
    })
  }
  if (options.alsoPaths.length > 0 && !options.ckanIniPath) {
    throw new MigrateError('--also needs --ckan-ini', {
      exitCode: EXIT_CODES.badInput,
      suggestion: 'Pass the main node’s ckan.ini with --ckan-ini, and the other nodes’ copies with --also.',
    })
  }
  const tokenFiles = await readTokenFiles(options.tokenFiles)

  step('Reading CKAN')
  const credential = options.api ? await readCredential({env, file: options.api.apiKeyFile}) : undefined
  if (credential?.warning) warnings.push(credential.warning)
  const site =
    options.api && credential
      ? await preflightSite({
          caCertPath: options.api.caCertPath,
          ckanUrl: options.api.ckanUrl,
          credential,
          env,
          headerName: options.api.headerName,
          iniPath: options.ckanIniPath,
          timeoutMs: options.api.timeoutMs,
        })
      : undefined
  if (site) warnings.push(...site.warnings)
  try {
    return await rewriteWith(site?.client, site?.status, {
      env,
      header: site?.header,
      now,
      options,
      step,
      tokenFiles,
      warnings,
    })
  } finally {
    await site?.client.close()
  }
}

type RewriteContext = {
  env: NodeJS.ProcessEnv
  /** The header the API credential went in (token-header.ts), recorded in the run folder. */
  header?: TokenHeader
  now: () => Date
  options: RewriteConfigOptions
  step: (step: string) => void
  tokenFiles: {byService: Map<string, Secret>; forAll?: Secret}
  warnings: string[]
}

async function rewriteWith(
  ckan: CkanApiClient | undefined,
  status: CkanStatus | undefined,
  {env, header, now, options, step, tokenFiles, warnings}: RewriteContext,
): Promise<RewriteConfigResult> {
  const ckanVersion = status ? versionOfRelease(status.ckanVersion) : '2.9'
  const caseRule = iniCaseRule(ckanVersion)

  step('Reading config files')
  const envFiles = await Promise.all(options.envFilePaths.map((path) => readConfigFile(path, 'env file')))
  const envFileValues = new Map<string, string>()
  for (const file of envFiles) for (const [name, value] of readEnvValues(file.text)) envFileValues.set(name, value)
  const runtimeEnv: NodeJS.ProcessEnv = {...env, ...Object.fromEntries(envFileValues)}
  const iniRoots = await Promise.all(
    [options.ckanIniPath, ...options.alsoPaths]
      .filter((path): path is string => Boolean(path))
      .map((path) => readCkanIni(path, {caseRule, env: runtimeEnv})),
  )
  // A key or section written twice was refused by readCkanIni (CKAN's ConfigParser refuses it too).
  const primary = iniRoots[0] ?? iniFromEnvFile(envFileValues, options.envFilePaths[0]!, caseRule)
  const settingEnv = iniRoots[0] ? runtimeEnv : env

  const plugins = new Set([
    ...primary.plugins(),
    ...(effectiveSetting(primary, 'ckan.plugins', settingEnv).value ?? '').split(/\s+/).filter(Boolean),
  ])
  if (!iniRoots[0]) for (const plugin of status?.extensions ?? []) plugins.add(plugin)
  const services = selectServices({named: options.services, plugins: [...plugins]})
  for (const named of tokenFiles.byService.keys()) {
    if (!services.some((service) => service.service === named))
      services.push(SERVICE_CATALOG.find((service) => service.service === named)!)
  }
  // A service whose plugin is not in ckan.plugins, yet whose setting holds a legacy key: nobody
  // reads it now, but the plugin may be enabled through the environment or later, and would then
  // send a key CKAN 2.10 ignores. Give it a token too (the audit warns about it).
  if (options.services.length === 0) {
    for (const service of SERVICE_CATALOG) {
      if (services.some((chosen) => chosen.service === service.service)) continue
      const current = effectiveSetting(primary, service.configKey, settingEnv).value?.trim()
      if (!current || credentialKind(current) !== 'legacy-key') continue
      services.push(service)
      warnings.push(
        `${service.configKey} holds a legacy key though ${service.plugins.join(', ')} is not in ckan.plugins; it gets a token too (the plugin may be enabled through the environment or later).`,
      )
    }
  }
  if (services.length === 0 && !options.fixHeader) {
    warnings.push(
      'No service needs a token: none of xloader, datapusher, datapusher_plus, validation is in ckan.plugins (name one with --service).',
    )
  }

  // Which services need a new token, and for whom. An existing run folder is read now (its tokens
  // are reused); a new one is created only once every target has been checked (below).
  let runFolder = await openRunFolderIfNeeded(options, ckan, services, tokenFiles)
  const stored = runFolder
    ? (await runFolder.readTokens()).filter((token) => token.source === 'rewrite-config' && !token.revokedAt)
    : []
  const plans: Array<ServicePlan & {token?: Secret}> = []
  for (const service of services) {
    const base = {configKey: service.configKey, envName: envvarsName(service.configKey), service: service.service}
    const fromFile = tokenFiles.byService.get(service.service) ?? tokenFiles.forAll
    if (fromFile) {
      plans.push({
        ...base,
        token: fromFile,
        tokenFingerprint: fromFile.fingerprint(),
        tokenName: null,
        tokenSource: 'token-file',
        user: null,
      })
      continue
    }
    const current = effectiveSetting(primary, service.configKey, settingEnv).value
    const reusable = stored.findLast((token) => token.service === service.service)
    if (reusable) {
      plans.push({
        ...base,
        token: reusable.token,
        tokenFingerprint: reusable.token.fingerprint(),
        tokenName: reusable.tokenName,
        tokenSource: 'reused',
        user: reusable.userName,
      })
    } else if (current && credentialKind(current) === 'token') {
      const kept = new Secret(current)
      plans.push({
        ...base,
        token: kept,
        tokenFingerprint: kept.fingerprint(),
        tokenName: null,
        tokenSource: 'kept',
        user: null,
      })
      warnings.push(
        `${service.configKey} already holds an API token (${kept.fingerprint()}); it is kept. Pass --token-file ${service.service}=FILE to replace it.`,
      )
    } else {
      plans.push({...base, tokenFingerprint: null, tokenName: null, tokenSource: 'would-create', user: null})
    }
  }

  const toCreate = plans.filter((plan) => plan.tokenSource === 'would-create')
  let serviceUser: {id: string; name: string} | undefined
  if (toCreate.length > 0 && !ckan && options.dryRun) {
    warnings.push(
      `Creating tokens for ${toCreate.map((plan) => plan.service).join(', ')} needs --ckan-url and --api-key-file (or --token-file).`,
    )
  } else if (toCreate.length > 0) {
    if (!ckan) {
      throw new MigrateError(
        `Creating tokens for ${toCreate.map((plan) => plan.service).join(', ')} needs the action API`,
        {
          exitCode: EXIT_CODES.badInput,
          suggestion:
            'Pass --ckan-url and --api-key-file (a sysadmin’s token or key), or give the tokens with --token-file.',
        },
      )
    }
    step('Checking the service user')
    serviceUser = await findServiceUser(
      ckan,
      options.serviceUser ?? effectiveSetting(primary, 'ckan.site_id', settingEnv).value,
    )
    for (const plan of toCreate) plan.user = serviceUser.name
  }

  // Secret pinning and the header.
  const settingsBase: Setting[] = []
  const pinning = await planSecretPinning(primary, ckanVersion, settingEnv, warnings)
  settingsBase.push(...pinning.settings)
  const apikeyHeaderName = effectiveSetting(primary, 'apikey_header_name', settingEnv).value ?? null
  if (apikeyHeaderName !== null && apikeyHeaderName !== 'Authorization') {
    warnings.push(
      `apikey_header_name is ${apikeyHeaderName}: CKAN 2.11 then reads API tokens only from that header, and XLoader sends Authorization.${options.fixHeader ? '' : ' Pass --fix-header to set apitoken_header_name = Authorization.'}`,
    )
  }
  if (options.fixHeader) settingsBase.push({key: 'apitoken_header_name', secret: false, value: 'Authorization'})

  const settingsFor = (plansNow: typeof plans): Setting[] => [
    ...plansNow.map((plan) => ({
      key: plan.configKey,
      secret: true,
      value: plan.token ? plan.token.reveal() : `${NEW_TOKEN_PLACEHOLDER}${plan.service}`,
    })),
    ...settingsBase,
  ]

  // First pass: plan with placeholders; validates every target before any token is made.
  step('Planning the changes')
  const targets = await collectTargets(iniRoots, envFiles, options.chainTarget)
  const firstPass = planFiles(targets, settingsFor(plans), caseRule)
  const changing = firstPass.filter((file) => file.changes.length > 0)
  for (const file of changing) {
    try {
      await assertReplaceable(file.edit.file)
    } catch (error) {
      if (!options.dryRun) throw error
      warnings.push((error as Error).message)
    }
  }

  for (const file of firstPass) {
    if (!file.edit.settings.some((setting) => setting.secret)) continue
    const tense = options.dryRun && file.changes.length > 0 ? 'would hold' : 'holds'
    const warning = await exposureWarning(file.edit.file, file.edit.kind, tense)
    if (warning) warnings.push(warning)
  }

  if (options.dryRun) {
    return {
      ckanVersion,
      dryRun: true,
      files: firstPass.map((file) => describeFile(file, file.changes.length > 0 ? 'would-change' : 'unchanged', null)),
      header: {apikeyHeaderName, fixed: false},
      nothingToChange: changing.length === 0,
      runFolder: runFolder?.path ?? null,
      secretPinning: pinning.keys.length > 0 ? {from: pinning.from, keys: pinning.keys} : null,
      services: plans.map(({token: _token, ...plan}) => plan),
      warnings,
    }
  }

  // Every lock before any side effect: the files this run changes (whatever another run's --out),
  // then the run folder. A file that changed between our read and our lock stops the run here,
  // before a token exists (exit 14).
  const unlocks: Array<() => Promise<void>> = []
  // The jtis the run folder held before this run created any (undefined: it created none), and the
  // services whose new token a written file now holds.
  let tokensBefore: Set<string> | undefined
  const writtenServices = new Set<string>()
  try {
    for (const file of changing) unlocks.push(await lockConfigFile(file.edit.file, 'rewrite-config'))
    for (const file of changing) await assertUnchanged(file.edit.file)
    if (!runFolder && options.out && ckan) runFolder = await createRunFolder(options.out, ckan)
    if (runFolder) {
      await runFolder.lock('rewrite-config')
      unlocks.push(() => runFolder!.unlock())
      await runFolder.record({command: 'rewrite-config', dryRun: false, kind: 'run-started'})
      if (header) await runFolder.recordTokenHeader(header, 'rewrite-config')
    }
    if (toCreate.length > 0) {
      const expiring = status?.extensions.includes('expire_api_token') || plugins.has('expire_api_token')
      tokensBefore = new Set((await runFolder!.readTokens()).map((token) => token.jti.reveal()))
      const created = await createServiceTokens(ckan!, runFolder!, serviceUser!, {
        at: now(),
        expiresInDays: expiring ? options.tokenLifetimeDays : undefined,
        services: toCreate.map((plan) => plan.service),
        step,
      })
      for (const plan of toCreate) {
        const token = created.get(plan.service)!
        Object.assign(plan, {
          token: token.token,
          tokenFingerprint: token.token.fingerprint(),
          tokenName: token.tokenName,
          tokenSource: 'created',
        })
      }
    }

    // Second pass with the real values; then write, each file only if it is still what we read.
    const finalPass = planFiles(targets, settingsFor(plans), caseRule)
    const toWrite = finalPass.filter((file) => file.changes.length > 0)
    for (const file of toWrite) await assertUnchanged(file.edit.file)
    const files: FilePlan[] = []
    for (const file of finalPass) {
      if (file.changes.length === 0) {
        files.push(describeFile(file, 'unchanged', null))
        continue
      }
      step(`Writing ${file.edit.file.givenPath}`)
      const backupPath = await writeBackup(file.edit.file, now())
      await replaceConfigFile(
        file.edit.file,
        file.newText,
        options.onBeforeReplace ? () => options.onBeforeReplace!(file.edit.file.path) : undefined,
      )
      // From here the file holds this run's tokens: a later failure must not revoke them.
      for (const plan of toCreate)
        if (file.edit.settings.some((setting) => setting.key === plan.configKey)) writtenServices.add(plan.service)
      await runFolder?.record({
        backupPath,
        configPath: file.edit.file.path,
        keys: file.changes.map((change) => change.setting),
        kind: 'config-rewritten',
      })
      files.push(describeFile(file, 'changed', backupPath))
    }
    await runFolder?.record({
      command: 'rewrite-config',
      kind: 'run-finished',
      summary: {filesChanged: toWrite.length, tokensCreated: toCreate.length},
    })
    return {
      ckanVersion,
      dryRun: false,
      files,
      header: {apikeyHeaderName, fixed: options.fixHeader},
      nothingToChange: toWrite.length === 0,
      runFolder: runFolder?.path ?? null,
      secretPinning: pinning.keys.length > 0 ? {from: pinning.from, keys: pinning.keys} : null,
      services: plans.map(({token: _token, ...plan}) => plan),
      warnings,
    }
  } catch (error) {
    if (tokensBefore && runFolder && ckan)
      throw await revokeUnwritten(ckan, runFolder, {
        before: tokensBefore,
        ckanIni: options.ckanIniPath,
        error,
        keep: writtenServices,
        serviceUser,
      })
    throw error
  } finally {
    for (const unlock of unlocks.reverse()) await unlock()
  }
}

/**
 * A run that fails after creating tokens revokes those no file holds (api_token_revoke, recorded
 * in the run folder so no rerun reuses them), so a failed run never leaves live tokens nobody
 * uses. Returns the error to throw: the original one, its suggestion saying what became of the
 * tokens; those that could not be revoked are named (token names, never a jti), with the commands
 * that revoke them, and stay in the run folder (a rerun with the same --out uses them).
 */
async function revokeUnwritten(
  ckan: CkanApiClient,
  runFolder: RunFolder,
  options: {
    before: ReadonlySet<string>
    ckanIni: string | undefined
    error: unknown
    keep: ReadonlySet<string>
    serviceUser: {name: string} | undefined
  },
): Promise<unknown> {
  const {before, error, keep} = options
  const unwritten = (await runFolder.readTokens()).filter(
    (token) =>
      token.source === 'rewrite-config' &&
      !token.revokedAt &&
      !before.has(token.jti.reveal()) &&
      !(token.service && keep.has(token.service)),
  )
  const kept =
    keep.size > 0
      ? `The tokens for ${[...keep].join(', ')} are in a written file: a rerun with the same --out reuses them.`
      : ''
  if (unwritten.length === 0 && !kept) return error
  const failed: Array<{reason: string; token: (typeof unwritten)[number]}> = []
  for (const token of unwritten) {
    try {
      await ckan.revokeApiToken(token.jti)
      await runFolder.recordRevoked(token)
    } catch (revokeError) {
      failed.push({reason: revokeError instanceof Error ? revokeError.message : String(revokeError), token})
    }
  }
  const original = error instanceof MigrateError ? error : undefined
  const revoked = unwritten.length - failed.length
  let told = [kept, revoked > 0 ? `The ${revoked} token(s) this run had made were revoked.` : '']
    .filter(Boolean)
    .join(' ')
  if (failed.length > 0) {
    const user = options.serviceUser?.name ?? failed[0]!.token.userName
    const ini = options.ckanIni ?? '/etc/ckan/default/ckan.ini'
    const names = failed.map(({token}) => JSON.stringify(token.tokenName)).join(', ')
    told =
      `${told} ${failed.length} token(s) this run made are live but in no file and could not be revoked (${failed[0]!.reason}): ${names}. Rerun with the same --out to use them, or revoke them: ckan -c ${ini} user token list ${user} shows [id] name; then ckan -c ${ini} user token revoke <id> for each of those names.`.trim()
  }
  return new MigrateError(original?.message ?? (error instanceof Error ? error.message : String(error)), {
    cause: error,
    exitCode: original?.exitCode ?? EXIT_CODES.unexpected,
    suggestion: [
      original ? original.suggestion : 'This is a bug in ckan-migrate; please report it with the command you ran.',
      told,
    ]
      .filter(Boolean)
      .join(' '),
  })
}

async function readTokenFiles(values: readonly string[]): Promise<{byService: Map<string, Secret>; forAll?: Secret}> {
  const byService = new Map<string, Secret>()
  let forAll: Secret | undefined
  for (const value of values) {
    const match = /^([A-Za-z_-]+)=(.+)$/.exec(value)
    const service = match ? normaliseServiceName(match[1]!) : undefined
    if (service && !SERVICE_CATALOG.some((entry) => entry.service === service)) {
      throw new MigrateError(`Unknown service in --token-file ${value}: ${match![1]}`, {
        exitCode: EXIT_CODES.badInput,
        suggestion: `Write --token-file SERVICE=FILE with SERVICE one of ${SERVICE_CATALOG.map((entry) => entry.service).join(', ')}.`,
      })
    }
    // A token file is read under the same rules as the sysadmin credential: from a file, never argv.
    const credential = await readCredential({env: {}, file: match ? match[2]! : value})
    if (credential.kind !== 'token') {
      throw new MigrateError(`${credential.source} does not hold an API token (a JWT)`, {
        exitCode: EXIT_CODES.badInput,
        suggestion:
          'Services need API tokens from CKAN 2.10 on; legacy keys stop working. Make one with ckan user token add.',
      })
    }
    if (service) byService.set(service, credential.secret)
    else forAll = credential.secret
  }
  return {byService, ...(forAll ? {forAll} : {})}
}

function readEnvValues(text: string): Map<string, string> {
  const values = new Map<string, string>()
  for (const line of splitLines(text).lines) {
    const match = /^\s*(?:export\s+)?([A-Za-z_]\w*)\s*=(.*)$/.exec(line.text)
    if (match) values.set(match[1]!, parseEnvValue(match[2]!).value)
  }
  return values
}

/** Without a ckan.ini, the env file's ckanext-envvars variables stand for the settings. */
function iniFromEnvFile(values: Map<string, string>, path: string, caseRule: 'lowercase' | 'preserve'): CkanIni {
  const lines = ['[app:main]']
  for (const [name, value] of values) {
    const key = envvarsKey(name)
    if (key && !/[\r\n]/.test(value)) lines.push(`${key} = ${escapeIniValue(value.trim())}`)
  }
  return new CkanIni([parseIniText(lines.join('\n'), path)], {caseRule, env: {}})
}

async function openRunFolderIfNeeded(
  options: RewriteConfigOptions,
  ckan: CkanApiClient | undefined,
  services: readonly ServiceDefinition[],
  tokenFiles: {byService: Map<string, Secret>; forAll?: Secret},
): Promise<RunFolder | undefined> {
  if (!options.out) {
    const needsTokens = !tokenFiles.forAll && services.some((service) => !tokenFiles.byService.has(service.service))
    if (needsTokens && !options.dryRun && ckan) {
      throw new MigrateError('Creating service tokens needs a run folder (--out DIR)', {
        exitCode: EXIT_CODES.badInput,
        suggestion:
          'Pass --out DIR: the tokens are stored there so revoke --out DIR can undo them, and a rerun reuses them.',
      })
    }
    return undefined
  }
  if (options.dryRun || ckan) {
    // Read an existing run folder (to reuse its tokens) but do not create one yet: a dry run never
    // does, and a real run does so only after every file it will change has been checked.
    try {
      return await openRunFolder(options.out, {
        create: false,
        ...(ckan ? {site: {ckanUrl: ckan.ckanUrl.href}} : {}),
      })
    } catch (error) {
      if (error instanceof MigrateError && error.exitCode === EXIT_CODES.badInput) return undefined
      throw error
    }
  }
  return openRunFolder(options.out, {create: false})
}

function createRunFolder(out: string, ckan: CkanApiClient): Promise<RunFolder> {
  return openRunFolder(out, {create: true, site: {ckanUrl: ckan.ckanUrl.href}})
}

async function findServiceUser(ckan: CkanApiClient, name: string | undefined): Promise<{id: string; name: string}> {
  const wanted = name ?? (await ckan.getSiteUser()).name
  try {
    const user = await ckan.userShow(wanted)
    if (user.state !== 'active') {
      throw new MigrateError(`The service user ${wanted} is ${user.state}`, {
        exitCode: EXIT_CODES.ckanRejected,
        suggestion:
          'CKAN 2.10+ treats tokens of non-active users as anonymous: pass an active account with --service-user.',
      })
    }
    return {id: user.id, name: user.name}
  } catch (error) {
    if (error instanceof MigrateError && 'status' in error && error.status === 404) {
      throw new MigrateError(`The service user ${wanted} does not exist on CKAN`, {
        exitCode: EXIT_CODES.ckanRejected,
        suggestion: 'Pass --service-user with an existing account (default: the site user named by ckan.site_id).',
      })
    }
    throw error
  }
}

/**
 * Creates the services' tokens with the run's one token protocol (run/token-issuer.ts): each
 * create journaled before it is sent, the token fsync'd to the store before it is used, an
 * earlier run's unknown outcome reconciled first. An unknown outcome stops the command (a rerun
 * reconciles it) rather than being retried now: a config rewrite is watched by its admin.
 */
async function createServiceTokens(
  ckan: CkanApiClient,
  runFolder: RunFolder,
  user: {id: string; name: string},
  options: {at: Date; expiresInDays: number | undefined; services: readonly string[]; step: (step: string) => void},
): Promise<Map<string, {token: Secret; tokenName: string}>> {
  const date = options.at.toISOString().slice(0, 10)
  const failures: UserOutcome[] = []
  const issuer = await TokenIssuer.create(
    runFolder,
    ckan,
    {
      date,
      stopAtUnknownOutcome: true,
      template: DEFAULT_TOKEN_NAME,
      // expire_api_token makes expires_in and unit required (ckan-facts §4.4).
      ...(options.expiresInDays === undefined ? {} : {expiresIn: options.expiresInDays, unit: 86_400}),
    },
    {
      maxStoring: 1,
      onDone(outcome) {
        if (outcome.outcome === 'failed') failures.push(outcome)
      },
    },
  )
  const row = {email: null, hasLegacyKey: false, id: user.id, name: user.name, state: 'active', sysadmin: false}
  for (const service of options.services) {
    options.step(`Creating a token for ${service}`)
    const tokenName = serviceTokenName(service, date, runFolder.meta.runId)
    await runFolder.record({attempt: 1, kind: 'create-sent', tokenName, userId: user.id, userName: user.name})
    await issuer.issue({service, tokenName, user: row})
    await issuer.drain()
    const failure = failures[0]
    if (failure) {
      throw new MigrateError(`Could not create the token for ${service}: ${failure.reason}`, {
        exitCode: EXIT_CODES.ckanRejected,
        suggestion:
          'Check CKAN, then run the same command again: a token whose outcome is unknown is found and revoked first.',
      })
    }
  }
  const created = new Map<string, {token: Secret; tokenName: string}>()
  for (const token of await runFolder.readTokens())
    if (
      token.source === 'rewrite-config' &&
      token.service &&
      !token.revokedAt &&
      options.services.includes(token.service)
    )
      created.set(token.service, {token: token.token, tokenName: token.tokenName})
  return created
}

/**
 * Pins api_token.jwt.encode/decode.secret to literal values (ckan-facts §9.3): both unset → both
 * `string:<the secret CKAN falls back to today>`; one unset → it gets the other's value; a value
 * written as an interpolation (`string:%(beaker.session.secret)s`) → its literal value.
 */
async function planSecretPinning(
  ini: CkanIni,
  version: CkanVersion,
  env: NodeJS.ProcessEnv,
  warnings: string[],
): Promise<{from: string; keys: string[]; settings: Setting[]}> {
  const encode = effectiveSetting(ini, JWT_ENCODE, env)
  const decode = effectiveSetting(ini, JWT_DECODE, env)
  const interpolated = (key: string, setting: typeof encode) =>
    setting.source === 'ini' && (ini.raw(key) ?? '').includes('%(')
  const settings: Setting[] = []
  let from: string
  if (!encode.value && !decode.value) {
    const secret = await resolveJwtSecret(ini, version, 'encode', env)
    const value = `string:${secret.secret.reveal()}`
    settings.push({key: JWT_ENCODE, secret: true, value}, {key: JWT_DECODE, secret: true, value})
    from = secret.from
  } else if (!encode.value || !decode.value) {
    const [setKey, set] = encode.value ? [JWT_ENCODE, encode] : [JWT_DECODE, decode]
    const other = setKey === JWT_ENCODE ? JWT_DECODE : JWT_ENCODE
    settings.push({key: other, secret: true, value: set.value!})
    if (interpolated(setKey, set)) settings.push({key: setKey, secret: true, value: set.value!})
    from = setKey
  } else {
    for (const [key, setting] of [
      [JWT_ENCODE, encode],
      [JWT_DECODE, decode],
    ] as const) {
      if (interpolated(key, setting)) settings.push({key, secret: true, value: setting.value!})
    }
    from = settings.length > 0 ? 'their interpolated values' : ''
    if (encode.value !== decode.value) {
      warnings.push(
        `${JWT_ENCODE} and ${JWT_DECODE} differ: CKAN then cannot verify the tokens it signs (HS256 needs one secret).`,
      )
    }
  }
  for (const setting of settings) {
    if (setting.value.startsWith('file:')) continue
    if (!setting.value.startsWith('string:')) {
      throw new MigrateError(`${setting.key} has no string: or file: prefix`, {
        exitCode: EXIT_CODES.badInput,
        suggestion: `CKAN fails on the first token it sees with such a value: write ${setting.key} = string:<secret>.`,
      })
    }
  }
  return {from, keys: settings.map((setting) => setting.key), settings}
}

type Target = {file: ConfigFile; kind: 'env' | 'ini'; owners: Array<(setting: Setting) => boolean>}

/**
 * Every file that may change: each ini root's chain (a key goes to the file defining it, or to
 * the top file; see ChainTarget), then the env files. A file shared by two chains is edited once.
 */
async function collectTargets(
  iniRoots: readonly CkanIni[],
  envFiles: readonly ConfigFile[],
  chainTarget: ChainTarget,
): Promise<Target[]> {
  const targets: Target[] = []
  const byPath = new Map<string, Target>()
  for (const ini of iniRoots) {
    for (const [index, parsed] of ini.files.entries()) {
      const owns = (setting: Setting) => {
        const defining = chainTarget === 'top' ? undefined : ini.where(setting.key)?.file
        return defining === undefined ? index === 0 : defining === parsed.path
      }
      const file = await readConfigFile(parsed.path, 'ckan.ini')
      const existing = byPath.get(file.path)
      if (existing) {
        existing.owners.push(owns)
        continue
      }
      const target: Target = {file, kind: 'ini', owners: [owns]}
      byPath.set(file.path, target)
      targets.push(target)
    }
  }
  for (const file of envFiles) targets.push({file, kind: 'env', owners: [() => true]})
  return targets
}

function planFiles(targets: readonly Target[], settings: Setting[], caseRule: 'lowercase' | 'preserve'): PlannedFile[] {
  return targets.map((target) => {
    const mine = settings.filter((setting) => target.owners.some((owns) => owns(setting)))
    const edit: TargetEdit = {file: target.file, kind: target.kind, settings: mine}
    if (target.kind === 'ini') {
      const result = editIni(target.file.text, mine, {caseRule, path: target.file.givenPath, section: 'app:main'})
      assertNoDuplicates(
        target.file.givenPath,
        result.duplicates.map((duplicate) => ({lines: duplicate.lines, name: duplicate.key})),
      )
      return {
        changes: result.changes.map((change) => ({action: change.action, line: change.line, setting: change.key})),
        edit,
        newText: result.text,
      }
    }
    const result = editEnvFile(
      target.file.text,
      mine.map((setting) => ({name: envvarsName(setting.key), secret: setting.secret, value: setting.value})),
    )
    assertNoDuplicates(target.file.givenPath, result.duplicates)
    return {
      changes: result.changes.map((change) => ({action: change.action, line: change.line, setting: change.name})),
      edit,
      newText: result.text,
    }
  })
}

function assertNoDuplicates(path: string, duplicates: ReadonlyArray<{lines: number[]; name: string}>): void {
  const duplicate = duplicates[0]
  if (!duplicate) return
  throw new MigrateError(`${path} sets ${duplicate.name} more than once (lines ${duplicate.lines.join(', ')})`, {
    exitCode: EXIT_CODES.badInput,
    suggestion: 'Delete all but one of those lines (CKAN’s ConfigParser refuses duplicated keys), then run again.',
  })
}

function describeFile(file: PlannedFile, status: FilePlan['status'], backupPath: string | null): FilePlan {
  return {
    backupPath,
    changes: file.changes,
    diff: unifiedDiff(file.edit.file.text, file.newText, {
      newLabel: `${file.edit.file.givenPath} (new)`,
      oldLabel: file.edit.file.givenPath,
      redactLine: configLineRedactor(file.edit.file.text, file.newText),
    }),
    kind: file.edit.kind,
    path: file.edit.file.givenPath,
    status,
  }
}
