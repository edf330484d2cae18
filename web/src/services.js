// The app's services, built once from the build-time config: Firebase Auth
// and the HTTP contract's client (docs/api.md).
import { createApi } from './lib/api.js'
import { createAuth } from './lib/auth.js'
import { readConfig } from './lib/config.js'

export const config = readConfig(import.meta.env)
export const auth = createAuth(config)
export const api = createApi({ origin: config.apiOrigin, getToken: (force) => auth.token(force) })
