import {fileURLToPath} from 'node:url'

/** The checkout the release is built from. */
export const PROJECT_ROOT = fileURLToPath(new URL('../..', import.meta.url)).replace(/\/$/, '')
