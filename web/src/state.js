// The app's shared state and services, provided once by main.js.
import { reactive } from 'vue'
import { createApi } from './lib/api.js'
import { createAuth } from './lib/auth.js'
import { readConfig } from './lib/config.js'
import { matchRoute } from './lib/router.js'

export const config = readConfig(import.meta.env)
export const auth = createAuth(config)
export const api = createApi({ origin: config.apiOrigin, getToken: (force) => auth.token(force) })

export const state = reactive({
  authReady: false,
  fbUser: null, // {uid, email, emailVerified, providers}
  user: null, // GET /api/user
  route: matchRoute(location.pathname),
  search: location.search,
})

export function snapshotFbUser(u) {
  if (!u) return null
  return {
    uid: u.uid,
    email: u.email,
    emailVerified: u.emailVerified,
    providers: (u.providerData || []).map((p) => p.providerId),
  }
}

/** Loads the account from the API; the caller shows a failure. */
export async function refreshUser() {
  state.user = await api.user()
  return state.user
}

export function navigate(to, { replace = false } = {}) {
  const url = new URL(to, location.origin)
  if (url.origin !== location.origin) {
    location.assign(url.href)
    return
  }
  if (replace) history.replaceState(null, '', url.pathname + url.search)
  else history.pushState(null, '', url.pathname + url.search)
  syncRoute()
  window.scrollTo?.(0, 0)
}

export function syncRoute() {
  state.route = matchRoute(location.pathname)
  state.search = location.search
}
