#!/usr/bin/env node
'use strict'
// Runs a command under a Node.js new enough for ckan-migrate (>= 22.12).
//
//   node bin/with-node.cjs <command> [arguments...]
//
// When the node running this file is new enough, the command runs as it is. Otherwise a current
// Node (the npm registry's node-<platform>-<arch> package, major 24) is installed once into a cache
// folder (CKAN_MIGRATE_NODE_CACHE, else $XDG_CACHE_HOME/ckan-migrate-node, else
// ~/.cache/ckan-migrate-node; the same folder .ci/ensure-node.sh uses), put first on PATH, and the
// command runs under it; one line on stderr says so. When that cannot be done, one line says what
// is missing and what to do, and the exit code is 12 (a missing tool, docs/exit-codes.md).
//
// Written for old Node versions on purpose (CommonJS, no newer syntax): it is the first thing a
// fresh clone runs, whatever node the machine has.

var childProcess = require('node:child_process')
var fs = require('node:fs')
var os = require('node:os')
var path = require('node:path')

var MINIMUM = [22, 12]
var NODE_MAJOR = '24'
var EXIT_MISSING_TOOL = 12

function say(line) {
  process.stderr.write('ckan-migrate: ' + line + '\n')
}

function newEnough(version) {
  var parts = String(version).replace(/^v/, '').split('.').map(Number)
  return parts[0] > MINIMUM[0] || (parts[0] === MINIMUM[0] && parts[1] >= MINIMUM[1])
}

function cacheFolder() {
  if (process.env.CKAN_MIGRATE_NODE_CACHE) return process.env.CKAN_MIGRATE_NODE_CACHE
  var base = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache')
  return path.join(base, 'ckan-migrate-node')
}

function versionOf(nodeBinary) {
  var probe = childProcess.spawnSync(nodeBinary, ['--version'], {encoding: 'utf8', timeout: 20000})
  return probe.status === 0 ? probe.stdout.trim() : undefined
}

/** The npm that started us (npm run sets npm_execpath), else the one on PATH. */
function npmCommand() {
  var execPath = process.env.npm_execpath
  if (execPath && /npm-cli\.js$/.test(execPath)) return {args: [execPath], file: process.execPath}
  return {args: [], file: 'npm'}
}

function firstLine(text) {
  var lines = String(text || '')
    .split('\n')
    .map(function (line) {
      return line.replace(/^npm (error|ERR!)\s*/, '').trim()
    })
    .filter(function (line) {
      return line !== '' && !/^(code|errno|syscall|A complete log|Log files)/i.test(line)
    })
  return (lines[0] || 'no output').slice(0, 200)
}

function fetchNode(cache, packageName) {
  var binary = path.join(cache, 'node_modules', packageName, 'bin', 'node')
  var cachedVersion = fs.existsSync(binary) ? versionOf(binary) : undefined
  if (cachedVersion && newEnough(cachedVersion)) return {binary: binary, fetched: false, version: cachedVersion}
  say(
    'Node ' +
      process.version +
      ' is older than ' +
      MINIMUM.join('.') +
      '; fetching Node ' +
      NODE_MAJOR +
      ' (npm package ' +
      packageName +
      ') into ' +
      cache,
  )
  fs.mkdirSync(cache, {recursive: true})
  var npm = npmCommand()
  var install = childProcess.spawnSync(
    npm.file,
    npm.args.concat([
      'install',
      '--no-save',
      '--no-audit',
      '--no-fund',
      '--no-package-lock',
      '--loglevel=error',
      '--prefix',
      cache,
      packageName + '@' + NODE_MAJOR,
    ]),
    {cwd: cache, encoding: 'utf8', env: process.env},
  )
  if (install.error || install.status !== 0) {
    var reason = install.error ? install.error.message : firstLine(install.stderr)
    return {reason: reason}
  }
  var version = fs.existsSync(binary) ? versionOf(binary) : undefined
  if (!version || !newEnough(version))
    return {reason: packageName + '@' + NODE_MAJOR + ' installed no working node binary'}
  return {binary: binary, fetched: true, version: version}
}

function run(file, args, env) {
  var child = childProcess.spawn(file, args, {env: env, stdio: 'inherit'})
  // The child shares our terminal, so it gets Ctrl-C itself; a SIGTERM sent to us alone is passed on.
  ;['SIGINT', 'SIGTERM', 'SIGHUP'].forEach(function (signal) {
    process.on(signal, function () {
      if (signal !== 'SIGINT') child.kill(signal)
    })
  })
  child.on('error', function (error) {
    say('could not run ' + file + ': ' + error.message)
    process.exit(EXIT_MISSING_TOOL)
  })
  child.on('exit', function (code, signal) {
    if (signal) process.exit(128 + (os.constants.signals[signal] || 1))
    process.exit(code === null ? 1 : code)
  })
}

/** Runs `command` (an array: file, then arguments) under a new-enough Node; exits with its code. */
function runUnderCurrentNode(command) {
  if (command.length === 0) {
    say('usage: node bin/with-node.cjs <command> [arguments...]')
    process.exit(2)
  }
  if (newEnough(process.version)) return run(command[0], command.slice(1), process.env)

  var supported = {'darwin-arm64': 1, 'darwin-x64': 1, 'linux-arm64': 1, 'linux-x64': 1}
  var platform = process.platform + '-' + process.arch
  if (!supported[platform]) {
    say(
      'needs Node.js ' +
        MINIMUM.join('.') +
        ' or newer (this is ' +
        process.version +
        ' on ' +
        platform +
        ', for which the npm registry has no Node package): install a current Node.js, then run this again',
    )
    process.exit(EXIT_MISSING_TOOL)
  }
  var cache = cacheFolder()
  var result = fetchNode(cache, 'node-' + platform)
  if (!result.binary) {
    say(
      'needs Node.js ' +
        MINIMUM.join('.') +
        ' or newer (this is ' +
        process.version +
        ') and could not fetch one ' +
        'from the npm registry (' +
        result.reason +
        '): install Node.js ' +
        MINIMUM.join('.') +
        '+ (or make the npm registry reachable), then run this again',
    )
    process.exit(EXIT_MISSING_TOOL)
  }
  // One line either way: the fetch announced itself above.
  if (!result.fetched)
    say(
      'using Node ' +
        result.version +
        ' from ' +
        path.dirname(result.binary) +
        ' (this machine has ' +
        process.version +
        ')',
    )
  var env = Object.assign({}, process.env, {
    CKAN_MIGRATE_NODE_BOOTSTRAPPED: process.version,
    PATH: path.dirname(result.binary) + path.delimiter + (process.env.PATH || ''),
  })
  // `node` in the command means the new one, whatever PATH lookup would have found.
  var file = command[0] === 'node' ? result.binary : command[0]
  run(file, command.slice(1), env)
}

module.exports = {newEnough: newEnough, runUnderCurrentNode: runUnderCurrentNode}

if (require.main === module) runUnderCurrentNode(process.argv.slice(2))
