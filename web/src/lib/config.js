// Build-time configuration, from Vite env (VITE_*). Nothing here is a secret:
// a Firebase web API key identifies the project, it does not grant access.

/** The app's config from an env object (import.meta.env in the app). */
export function readConfig(env = {}) {
  const projectId = (env.VITE_FIREBASE_PROJECT_ID || 'demo-paymeter').trim()
  const emulatorUrl = (env.VITE_AUTH_EMULATOR_URL || '').trim().replace(/\/+$/, '')
  const demo = projectId.startsWith('demo-')
  const apiKey = (env.VITE_FIREBASE_API_KEY || '').trim() || (emulatorUrl || demo ? 'demo-api-key' : '')
  return {
    firebase: {
      apiKey,
      authDomain: (env.VITE_FIREBASE_AUTH_DOMAIN || '').trim() || `${projectId}.firebaseapp.com`,
      projectId,
    },
    emulatorUrl,
    apiOrigin: (env.VITE_API_ORIGIN || '').trim().replace(/\/+$/, ''),
    problems: apiKey ? [] : ['VITE_FIREBASE_API_KEY is not set: sign-in cannot work.'],
  }
}
