// The app's router: the pages of lib/router.js on the browser's history, and
// the sign-in rules applied on every navigation and on every sign-in change.
import { createRouter, createWebHistory } from 'vue-router'
import { redirectFor, routeRecords, searchOf } from './lib/router.js'
import { session, signedIn } from './stores/session.js'
import HomeView from './views/HomeView.vue'
import AuthView from './views/AuthView.vue'
import DashboardView from './views/DashboardView.vue'
import KeysView from './views/KeysView.vue'
import PricingView from './views/PricingView.vue'
import PlaygroundView from './views/PlaygroundView.vue'
import CheckoutView from './views/CheckoutView.vue'
import NotFoundView from './views/NotFoundView.vue'

const views = {
  home: HomeView,
  signin: AuthView,
  signup: AuthView,
  reset: AuthView,
  dashboard: DashboardView,
  keys: KeysView,
  pricing: PricingView,
  playground: PlaygroundView,
  'checkout-success': CheckoutView,
  'checkout-cancel': CheckoutView,
  'not-found': NotFoundView,
}

export const router = createRouter({
  history: createWebHistory(),
  routes: routeRecords((name) => views[name]),
  // A new page starts at the top; back and forward return to where the reader was.
  scrollBehavior: (to, from, saved) => saved || { top: 0 },
})

// Until Firebase has told who is signed in, the app says "Loading…" and
// redirects nobody; startSession's callback then applies the rules once.
router.beforeEach((to) => (session.ready && redirectFor(to, signedIn.value, searchOf(to))) || true)

/** Applies the sign-in rules to the page shown, after the sign-in state changed. */
export async function applySignInRules() {
  await router.isReady()
  const here = router.currentRoute.value
  const to = redirectFor(here, signedIn.value, searchOf(here))
  if (to) await router.replace(to)
}
