// Firebase Auth: the only Firebase product the app uses.
import { initializeApp } from 'firebase/app'
import {
  GoogleAuthProvider,
  connectAuthEmulator,
  createUserWithEmailAndPassword,
  getAuth,
  onAuthStateChanged,
  reload,
  sendEmailVerification,
  sendPasswordResetEmail,
  signInWithEmailAndPassword,
  signInWithCredential,
  signInWithPopup,
  signOut,
} from 'firebase/auth'
import { emulatorGoogleClaims } from './emulator.js'

/** Sets up Firebase Auth from the app config and returns the calls the app needs. */
export function createAuth(config) {
  const app = initializeApp(config.firebase)
  const auth = getAuth(app)
  if (config.emulatorUrl) connectAuthEmulator(auth, config.emulatorUrl, { disableWarnings: true })

  return {
    emulator: !!config.emulatorUrl,
    onChange: (fn) => onAuthStateChanged(auth, fn),
    current: () => auth.currentUser,
    async token(forceRefresh = false) {
      return auth.currentUser ? auth.currentUser.getIdToken(forceRefresh) : null
    },
    async signUp(email, password) {
      const cred = await createUserWithEmailAndPassword(auth, email, password)
      // The notice on the dashboard says the link was sent; a failure here is shown there.
      await sendEmailVerification(cred.user).catch(() => {})
      return cred.user
    },
    async signIn(email, password) {
      return (await signInWithEmailAndPassword(auth, email, password)).user
    },
    // With the Auth emulator, pass the Google account's email: the emulator's
    // popup page cannot open offline (the SDK loads Google's gapi script for it),
    // so the app hands the emulator the unsigned Google ID token that its fake
    // IdP page would have made. In production this is the real Google popup.
    async signInWithGoogle(emulatorEmail) {
      if (config.emulatorUrl) {
        const claims = emulatorGoogleClaims(emulatorEmail)
        return (await signInWithCredential(auth, GoogleAuthProvider.credential(JSON.stringify(claims)))).user
      }
      const provider = new GoogleAuthProvider()
      provider.setCustomParameters({ prompt: 'select_account' })
      return (await signInWithPopup(auth, provider)).user
    },
    async resendVerification() {
      if (auth.currentUser) await sendEmailVerification(auth.currentUser)
    },
    async reload() {
      if (auth.currentUser) await reload(auth.currentUser)
      return auth.currentUser
    },
    async resetPassword(email) {
      await sendPasswordResetEmail(auth, email)
    },
    async signOut() {
      await signOut(auth)
    },
  }
}
