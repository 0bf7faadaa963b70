import {readCkanIni, type CkanIni} from './ckan-ini.js'
import {chooseDatabaseUrl, type DatabaseUrlChoice} from './ckan-settings.js'

/**
 * The site's database as every command finds it: --database-url when given, else ckan.ini's
 * sqlalchemy.url with CKAN's environment override (CKAN_SQLALCHEMY_URL). Returns the ini too,
 * for the settings a command reads next.
 */
export async function resolveSiteDatabase(options: {
  ckanIniPath?: string
  databaseUrl?: string
  env?: NodeJS.ProcessEnv
}): Promise<DatabaseUrlChoice & {ini: CkanIni | undefined}> {
  const env = options.env ?? process.env
  const ini = options.ckanIniPath ? await readCkanIni(options.ckanIniPath, {env}) : undefined
  return {...chooseDatabaseUrl({databaseUrl: options.databaseUrl, ini}, env), ini}
}
