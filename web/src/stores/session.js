// The session: who is signed in (Firebase) and their account (GET /api/user).
// This module alone writes that state; everything else reads `session`, which
// is read-only, and changes it through the actions below.
import { computed, reactive, readonly } from 'vue'
import { api, auth } from '../services.js'
import { humanMessage } from '../lib/errors.js'

const state = reactive({
  ready: false, // Firebase has told the first sign-in state
  fbUser: null, // {uid, email, emailVerified, providers}
  user: null, // GET /api/user
  loadError: '', // why the account could not be loaded after a sign-in
})

export const session = readonly(state)
export const signedIn = computed(() => !!state.fbUser)

export function snapshotFbUser(u) {
  if (!u) return null
  return {
    uid: u.uid,
    email: u.email,
    emailVerified: u.emailVerified,
    providers: (u.providerData || []).map((p) => p.providerId),
  }
}

/**
 * Follows Firebase's sign-in state: on each change forgets the account, loads
 * the new one (a failure goes to session.loadError), then calls onSettled.
 */
export function startSession(onSettled) {
  return auth.onChange(async (u) => {
    state.fbUser = snapshotFbUser(u)
    state.user = null
    state.loadError = ''
    if (u) {
      try {
        await refreshUser()
      } catch (err) {
        state.loadError = humanMessage(err)
      }
    }
    state.ready = true
    onSettled?.()
  })
}

/** Loads the account from the API; the caller shows a failure. */
export async function refreshUser() {
  state.user = await api.user()
  return state.user
}

/** Reloads the Firebase user (say after the email was verified elsewhere). */
export async function reloadFbUser() {
  state.fbUser = snapshotFbUser(await auth.reload())
  return state.fbUser
}

/** Cancels the subscription (POST /api/cancel) and keeps the account it answers. */
export async function switchToFree() {
  state.user = await api.cancel()
  return state.user
}

/** Signs out; the sign-in state change then clears the session. */
export async function signOut() {
  await auth.signOut()
}
