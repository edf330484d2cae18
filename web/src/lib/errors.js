// Errors the app can show to a person. Every failure ends up as one of these
// messages: the contract's own message when the server sent one, otherwise a
// plain sentence that says what went wrong and what to do.

/** An error answered by the Paymeter API, carrying the contract's code and message. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message)
    this.name = 'ApiError'
    this.status = status
    this.code = code
  }
}

const statusFallback = {
  400: 'The request was not accepted. Please check what you entered.',
  401: 'Your session has ended. Please sign in again.',
  402: 'You have no credits left.',
  403: 'You are not allowed to do that.',
  404: 'That was not found.',
  409: 'That conflicts with the current state of your account. Refresh and try again.',
  429: 'Too many requests. Please wait a moment and try again.',
}

/** The message for a status when the body carried none. */
export function messageForStatus(status) {
  if (statusFallback[status]) return statusFallback[status]
  if (status >= 500) return `The server had a problem (HTTP ${status}). Please try again in a moment.`
  return `The request failed (HTTP ${status}).`
}

/**
 * Builds an ApiError from a status and a response body text, using the
 * contract's shape {"error":{"code","message"}} when the body has it.
 */
export function apiErrorFrom(status, bodyText) {
  let code = `http_${status}`
  let message = ''
  try {
    const body = JSON.parse(bodyText)
    if (body && typeof body.error === 'object' && body.error) {
      if (typeof body.error.code === 'string') code = body.error.code
      if (typeof body.error.message === 'string') message = body.error.message.trim()
    }
  } catch {
    // not JSON: fall back to a message by status
  }
  return new ApiError(status, code, message || messageForStatus(status))
}

const authMessages = {
  'auth/email-already-in-use': 'An account with this email already exists. Sign in instead, or reset your password.',
  'auth/invalid-email': 'That email address does not look right.',
  'auth/missing-email': 'Please enter your email address.',
  'auth/missing-password': 'Please enter your password.',
  'auth/weak-password': 'That password is too weak: use at least 6 characters.',
  'auth/invalid-credential': 'The email or password is wrong.',
  'auth/invalid-login-credentials': 'The email or password is wrong.',
  'auth/wrong-password': 'The email or password is wrong.',
  'auth/user-not-found': 'There is no account with this email.',
  'auth/user-disabled': 'This account has been disabled.',
  'auth/too-many-requests': 'Too many attempts. Please wait a little and try again.',
  'auth/network-request-failed': 'Could not reach the sign-in service. Check your connection and try again.',
  'auth/popup-closed-by-user': 'The sign-in window was closed before signing in finished.',
  'auth/cancelled-popup-request': 'The sign-in window was closed before signing in finished.',
  'auth/popup-blocked': 'Your browser blocked the sign-in window. Allow pop-ups for this site and try again.',
  'auth/account-exists-with-different-credential': 'An account already exists with this email using another sign-in method.',
  'auth/requires-recent-login': 'Please sign in again to do that.',
  'auth/invalid-api-key': 'The app is misconfigured (invalid Firebase API key).',
  'auth/unauthorized-domain': 'This site is not allowed to sign in with that provider.',
  'auth/operation-not-allowed': 'That sign-in method is not enabled.',
}

/** A message for a person, whatever was thrown. */
export function humanMessage(err) {
  if (!err) return 'Something went wrong.'
  if (err instanceof ApiError) return err.message
  const code = typeof err.code === 'string' ? err.code : ''
  if (code.startsWith('auth/')) {
    return authMessages[code] || `Sign-in failed (${code.slice(5).replaceAll('-', ' ')}).`
  }
  if (err.name === 'TypeError' || err.name === 'NetworkError') {
    return 'Could not reach the server. Check your connection and try again.'
  }
  if (err.name === 'TimeoutError' || err.name === 'AbortError') {
    return 'The server took too long to answer. Please try again.'
  }
  return err.message || 'Something went wrong.'
}
