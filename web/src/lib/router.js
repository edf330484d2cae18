// The app's pages and the sign-in rules between them, for Vue Router
// (src/router.js builds the router from this table).

/** Every page: path, name, what its <h1> and tab title say, whether it needs a signed-in user. */
export const routes = [
  { path: '/', name: 'home', meta: { title: 'Paymeter' } },
  { path: '/signin', name: 'signin', meta: { title: 'Sign in' }, props: { mode: 'signin' } },
  { path: '/signup', name: 'signup', meta: { title: 'Create an account' }, props: { mode: 'signup' } },
  { path: '/reset', name: 'reset', meta: { title: 'Reset your password' }, props: { mode: 'reset' } },
  { path: '/dashboard', name: 'dashboard', meta: { title: 'Dashboard', auth: true } },
  { path: '/keys', name: 'keys', meta: { title: 'API keys', auth: true } },
  { path: '/pricing', name: 'pricing', meta: { title: 'Pricing' } },
  { path: '/playground', name: 'playground', meta: { title: 'API playground' } },
  { path: '/checkout/success', name: 'checkout-success', meta: { title: 'Payment complete', auth: true }, props: { outcome: 'success' } },
  { path: '/checkout/cancel', name: 'checkout-cancel', meta: { title: 'Payment cancelled', auth: true }, props: { outcome: 'cancel' } },
  // Any other path (the servers answer index.html for it) is a page of its own.
  { path: '/:pathMatch(.*)*', name: 'not-found', meta: { title: 'Page not found' } },
]

/** Vue Router's route records: the table with the component viewFor(name) gives each page. */
export function routeRecords(viewFor) {
  return routes.map((r) => ({ ...r, component: viewFor(r.name) }))
}

/** The query string of a route location, with its "?", or "". */
export function searchOf(route) {
  const i = route.fullPath.indexOf('?')
  return i < 0 ? '' : route.fullPath.slice(i).replace(/#.*$/, '')
}

/**
 * Where to go instead, if anywhere: signed-out people asking for a private
 * page go to sign in (remembering where they were going); signed-in people on
 * the sign-in pages or home go to the dashboard.
 */
export function redirectFor(route, signedIn, search = '') {
  if (route.meta?.auth && !signedIn) {
    const next = route.path + (search || '')
    return `/signin?next=${encodeURIComponent(next)}`
  }
  if (signedIn && ['home', 'signin', 'signup'].includes(route.name)) {
    const next = new URLSearchParams(search).get('next')
    return safeNext(next) || '/dashboard'
  }
  return null
}

/** Only same-site paths are followed after sign-in. */
export function safeNext(next) {
  if (typeof next !== 'string' || !next.startsWith('/') || next.startsWith('//') || next.includes('\\')) return null
  return next
}
