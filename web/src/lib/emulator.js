// Helpers for the local Firebase Auth emulator only.

/** FNV-1a, 32 bits, as 8 hex digits: a stable id from a string. */
export function fnv1a(text) {
  let h = 0x811c9dc5
  for (const ch of new TextEncoder().encode(text)) {
    h ^= ch
    h = Math.imul(h, 0x01000193) >>> 0
  }
  return h.toString(16).padStart(8, '0')
}

/**
 * The claims of a fake Google ID token for the Auth emulator, which accepts
 * them unsigned: the same email always gives the same Google account.
 * Throws for an email that is clearly not one.
 */
export function emulatorGoogleClaims(email) {
  const e = String(email || '').trim().toLowerCase()
  if (!/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(e)) {
    throw Object.assign(new Error('Enter the Google account’s email address.'), { code: 'auth/invalid-email' })
  }
  const name = e.split('@')[0].replace(/[._-]+/g, ' ').replace(/\b\w/g, (c) => c.toUpperCase())
  return { sub: `emu-google-${fnv1a(e)}`, email: e, email_verified: true, name }
}
