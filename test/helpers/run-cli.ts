import {runCommand} from '@oclif/test'
import {fileURLToPath} from 'node:url'

export const PROJECT_ROOT = fileURLToPath(new URL('../..', import.meta.url))

export type CliRun<Result> = {
  error?: Error & {oclif?: {exit?: number}}
  /** The process exit code the command would end with (0 on success). */
  exitCode: number
  result?: Result
  stderr: string
  stdout: string
}

/**
 * Runs `ckan-migrate ...args` in-process from src/ (ignoring any oclif.manifest.json left by a
 * build), the way a user types it, and reports the exit code the real process would have.
 */
export async function runCli<Result = unknown>(args: string[]): Promise<CliRun<Result>> {
  process.exitCode = undefined
  const {error, result, stderr, stdout} = await runCommand<Result>(args, {ignoreManifest: true, root: PROJECT_ROOT})
  const typedError = error as CliRun<Result>['error']
  const exitCode = typedError?.oclif?.exit ?? (typeof process.exitCode === 'number' ? process.exitCode : 0)
  process.exitCode = undefined
  return {error: typedError, exitCode, result, stderr, stdout}
}

/** Runs a command with --json and parses the single JSON document it prints. */
export async function runCliJson<Result = unknown>(args: string[]) {
  const run = await runCli<Result>([...args, '--json'])
  let json: {
    error?: {code: string; message: string; suggestion?: string}
    result?: Result
    status: number
    warnings: string[]
  }
  try {
    json = JSON.parse(run.stdout)
  } catch {
    throw new Error(`not one JSON document on stdout:\n${run.stdout}\nstderr:\n${run.stderr}`)
  }
  return {...run, json}
}
