import {parentPort} from 'node:worker_threads'

import {MigrateError} from '../lib/errors.js'
import type {CkanVersion} from '../lib/site/ckan-version.js'
import {backupEmbeddedDatabase, type EmbeddedBackupOptions} from './embedded-backup.js'
import type {FaultSettings} from './faults.js'
import type {SiteRequest, SiteWorkerReply, WorkerSiteFacts} from './hosted-site.js'
import {type SandboxSite, type SandboxSiteOptions, startSandboxSite} from './sandbox-site.js'

/**
 * The sandbox site in a worker thread (hosted-site.ts): PGlite, its socket server and the CKAN
 * emulator run here, on their own event loop and core, while the CLI's workflows run on the main
 * thread. Requests come as messages; each gets one reply with its id.
 */
let site: SandboxSite | undefined

async function serve(request: SiteRequest): Promise<unknown> {
  switch (request.op) {
    case 'start': {
      site = await startSandboxSite(request.options as SandboxSiteOptions)
      const facts: WorkerSiteFacts = {
        adminCredential: site.adminCredential.reveal(),
        adminName: site.adminName,
        apiKeyFile: site.apiKeyFile,
        ckanIni: site.ckanIni,
        ckanUrl: site.ckanUrl,
        databaseUrl: site.databaseUrl,
        dir: site.dir,
        engine: site.engine,
        model: site.model,
        port: site.emulator.port,
        siteUserName: site.siteUserName,
        version: site.version,
      }
      return facts
    }
    case 'backup': {
      if (!site?.pglite) throw new Error('The site has no embedded database to back up')
      return backupEmbeddedDatabase({...(request.options as Omit<EmbeddedBackupOptions, 'db'>), db: site.pglite})
    }
    case 'loadConfig': {
      return site!.emulator.loadConfig(request.path)
    }
    case 'setFaults': {
      site!.emulator.setFaults(request.faults as FaultSettings)
      return undefined
    }
    case 'setVersion': {
      return site!.emulator.setVersion(request.version as CkanVersion)
    }
    case 'stats': {
      return site!.emulator.stats()
    }
    case 'stop': {
      await site?.stop()
      return undefined
    }
  }
}

function serialized(error: unknown): SiteWorkerReply['error'] {
  if (error instanceof MigrateError)
    return {exitCode: error.exitCode, message: error.message, name: error.name, suggestion: error.suggestion}
  if (error instanceof Error)
    return {code: (error as NodeJS.ErrnoException).code, message: error.message, name: error.name}
  return {message: String(error), name: 'Error'}
}

parentPort!.on('message', (request: SiteRequest) => {
  serve(request).then(
    (value) => {
      parentPort!.postMessage({id: request.id, value} satisfies SiteWorkerReply)
      // Stopped: nothing is left to run, so the thread ends on its own (and writes a --cpu-prof).
      if (request.op === 'stop') parentPort!.close()
    },
    (error: unknown) => parentPort!.postMessage({error: serialized(error), id: request.id} satisfies SiteWorkerReply),
  )
})
