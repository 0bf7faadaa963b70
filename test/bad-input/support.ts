import {spawn} from 'node:child_process'
import {createHash} from 'node:crypto'
import {appendFile, mkdtemp, readdir, readFile, rm, stat} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {expect, onTestFinished} from 'vitest'

import {EXIT_CODES, type ExitCodeName} from '../../src/lib/errors.js'
import {PROJECT_ROOT, runCli, runCliJson} from '../helpers/run-cli.js'

/** What a user must see when ckan-migrate refuses bad input. */
export type Refusal = {
  /** The documented exit code, by name (docs/exit-codes.md). */
  code: ExitCodeName
  /** What the one-line message says. */
  message: RegExp
  /** Values that must appear nowhere in stdout, stderr or the message (credentials, tokens). */
  secrets?: string[]
  /** What the suggestion says (default: any non-empty suggestion, except for oclif's usage errors). */
  suggestion?: RegExp
}

export type RefusalRuns = {human: Awaited<ReturnType<typeof runCli>>; json: Awaited<ReturnType<typeof runCliJson>>}

const STACK_LINE = /\n\s+at /

/** No stack trace, no path into node_modules or our sources, no secret. */
export function expectNoLeak(text: string, secrets: string[] = []): void {
  expect(text).not.toMatch(STACK_LINE)
  expect(text).not.toContain('node_modules')
  expect(text).not.toMatch(/\.ts:\d+:\d+/)
  for (const secret of secrets) if (secret) expect(text).not.toContain(secret)
}

/**
 * Runs `ckan-migrate ...args` twice, in human mode and with --json, and checks what a user sees:
 * the documented exit code both times; a one-line message with a suggestion, no stack and no
 * secret; under --json exactly one JSON document on stdout with `status` equal to the exit code
 * and `error.code` its name.
 */
export async function expectRefused(args: string[], refusal: Refusal): Promise<RefusalRuns> {
  const exit = EXIT_CODES[refusal.code]
  const human = await runCli(args)
  const describe = `${args.join(' ')}\nstdout: ${human.stdout}\nstderr: ${human.stderr}\nerror: ${human.error?.stack}`
  expect(human.exitCode, describe).toBe(exit)
  const message = human.error?.message ?? ''
  expect(message, describe).toMatch(refusal.message)
  if (refusal.code !== 'usage') expect(message, 'the message is one line').not.toContain('\n')
  const suggestions = (human.error as undefined | {suggestions?: string[]})?.suggestions ?? []
  if (refusal.code !== 'usage') {
    expect(suggestions, 'a MigrateError says what to do').toHaveLength(1)
    expect(suggestions[0]!.length).toBeGreaterThan(0)
    if (refusal.suggestion) expect(suggestions[0]).toMatch(refusal.suggestion)
    expect(suggestions[0]).not.toContain('\n')
  }
  expectNoLeak(`${human.stdout}\n${human.stderr}\n${message}\n${suggestions.join('\n')}`, refusal.secrets)

  const json = await runCliJson(args)
  expect(json.exitCode, json.stdout).toBe(exit)
  expect(json.json.status).toBe(exit)
  expect(json.json.error?.code).toBe(refusal.code)
  expect(json.json.error?.message).toMatch(refusal.message)
  if (refusal.code !== 'usage') expect(json.json.error?.suggestion).toBeTruthy()
  expect(json.json).not.toHaveProperty('result')
  // Exactly one document: parsing the whole of stdout worked (runCliJson), and nothing else is there.
  expect(JSON.stringify(JSON.parse(json.stdout))).toBe(JSON.stringify(json.json))
  expectNoLeak(`${json.stdout}\n${json.stderr}`, refusal.secrets)
  // BAD_INPUT_TABLE=file.jsonl collects what users see, for docs/bad-input.md.
  if (process.env.BAD_INPUT_TABLE) {
    const line = {
      args: args.join(' '),
      code: json.json.status,
      message: json.json.error?.message,
      suggestion: json.json.error?.suggestion,
      test: expect.getState().currentTestName,
    }
    await appendFile(process.env.BAD_INPUT_TABLE, `${JSON.stringify(line)}\n`)
  }
  return {human, json}
}

/** A temporary folder removed when the test finishes (or, from beforeAll, call `removeFolder` in afterAll). */
export async function temporaryFolder(
  prefix = 'ckan-migrate-bad-',
  options: {autoRemove?: boolean} = {},
): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  if (options.autoRemove !== false) onTestFinished(() => removeFolder(dir))
  return dir
}

export async function removeFolder(dir: string | undefined): Promise<void> {
  if (dir) await rm(dir, {force: true, recursive: true})
}

export async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  )
}

/** Names and SHA-256 of every file in a folder (one level), to prove nothing changed. */
export async function snapshotFolder(dir: string): Promise<Record<string, string>> {
  const snapshot: Record<string, string> = {}
  for (const name of (await readdir(dir)).sort()) {
    const info = await stat(join(dir, name))
    snapshot[name] = info.isFile()
      ? createHash('sha256')
          .update(await readFile(join(dir, name)))
          .digest('hex')
      : 'folder'
  }
  return snapshot
}

/** Every token (JWT) and jti stored in a run folder's token store: values that must never be printed. */
export async function storedSecrets(out: string): Promise<string[]> {
  const text = await readFile(join(out, 'tokens.jsonl'), 'utf8').catch(() => '')
  return text
    .split('\n')
    .filter(Boolean)
    .flatMap((line) => {
      const record = JSON.parse(line) as {jti?: string; token?: string}
      return [record.token ?? '', record.jti ?? '']
    })
    .filter(Boolean)
}

export type ProductionRun = {code: null | number; stderr: string; stdout: string}

/**
 * Runs ckan-migrate as a child process through oclif's production error handling (what a user
 * of the installed `ckan-migrate` sees: no stack in development style), loading src/ via tsx.
 */
export async function runProduction(args: string[], env: NodeJS.ProcessEnv = {}): Promise<ProductionRun> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', join(PROJECT_ROOT, 'test/bad-input/production-entry.js'), ...args],
    {
      cwd: PROJECT_ROOT,
      // NODE_ENV=development only lets oclif map dist/ to src/; the error printing is production's.
      env: {...process.env, CI: 'true', NODE_ENV: 'development', NODE_OPTIONS: '', OCLIF_COLUMNS: '1000', ...env},
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  )
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')))
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')))
  const code = await new Promise<null | number>((resolve) => child.on('close', (exitCode) => resolve(exitCode)))
  return {code, stderr, stdout}
}
