// What the dashboard says about an unverified email.

/**
 * The verification notice for the API's user and the Firebase user, or null
 * when there is nothing to say. `pending`: the API holds the Free credits back
 * until the email is verified (GET /api/user's freeCreditsPending).
 * `staleToken`: Firebase says the email is verified but the API has not yet
 * seen a token that says so: refresh the ID token and reload the account.
 */
export function verifyNotice(user, fbUser) {
  const pending = user?.freeCreditsPending === 'verify_email'
  const verified = !!fbUser?.emailVerified
  const unverifiedPassword = !!fbUser?.email && !verified && (fbUser.providers || []).includes('password')
  if (!pending && !unverifiedPassword) return null
  return {
    pending,
    staleToken: pending && verified,
    text: pending
      ? 'Verify your email to get your Free credits: they arrive as soon as you open the link.'
      : 'Open it to confirm the address is yours; you can use Paymeter meanwhile.',
  }
}
