// Where the app is: the hand-written router's state.
import { reactive } from 'vue'
import { matchRoute } from './lib/router.js'

export const state = reactive({
  route: matchRoute(location.pathname),
  search: location.search,
})

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
