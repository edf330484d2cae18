// A small history router: the app has a handful of pages and no nesting.

export const routes = [
  { path: '/', name: 'home', title: 'Paymeter' },
  { path: '/signin', name: 'signin', title: 'Sign in' },
  { path: '/signup', name: 'signup', title: 'Create an account' },
  { path: '/reset', name: 'reset', title: 'Reset your password' },
  { path: '/dashboard', name: 'dashboard', title: 'Dashboard', auth: true },
  { path: '/keys', name: 'keys', title: 'API keys', auth: true },
  { path: '/pricing', name: 'pricing', title: 'Pricing' },
  { path: '/playground', name: 'playground', title: 'API playground' },
  { path: '/checkout/success', name: 'checkout-success', title: 'Payment complete', auth: true },
  { path: '/checkout/cancel', name: 'checkout-cancel', title: 'Payment cancelled', auth: true },
]

/** The route for a path (trailing slashes ignored), or the not-found route. */
export function matchRoute(pathname) {
  const p = (pathname || '/').replace(/\/+$/, '') || '/'
  return routes.find((r) => r.path === p) || { path: p, name: 'not-found', title: 'Page not found' }
}

/**
 * Where to go instead, if anywhere: signed-out people asking for a private
 * page go to sign in (remembering where they were going); signed-in people on
 * the sign-in pages or home go to the dashboard.
 */
export function redirectFor(route, signedIn, search = '') {
  if (route.auth && !signedIn) {
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
