import { describe, expect, it } from 'vitest'
import { verifyNotice } from './verify.js'

const password = (emailVerified) => ({ uid: 'u', email: 'u@example.com', emailVerified, providers: ['password'] })
const google = { uid: 'g', email: 'g@example.com', emailVerified: true, providers: ['google.com'] }

describe('verifyNotice', () => {
  it('says an unverified sign-up gets its Free credits once verified', () => {
    const n = verifyNotice({ credits: 0, freeCreditsPending: 'verify_email' }, password(false))
    expect(n.pending).toBe(true)
    expect(n.staleToken).toBe(false)
    expect(n.text).toMatch(/verify your email to get your Free credits/i)
  })

  it('asks for a fresh token when Firebase says verified but the API does not yet', () => {
    expect(verifyNotice({ freeCreditsPending: 'verify_email' }, password(true))).toMatchObject({ pending: true, staleToken: true })
  })

  it('still asks an unverified user to verify when the credits are not held (make dev)', () => {
    const n = verifyNotice({ credits: 50, freeCreditsPending: null }, password(false))
    expect(n.pending).toBe(false)
    expect(n.text).not.toMatch(/Free credits/)
  })

  it('says nothing to a verified or Google user', () => {
    expect(verifyNotice({ credits: 50, freeCreditsPending: null }, password(true))).toBeNull()
    expect(verifyNotice({ credits: 50 }, google)).toBeNull()
    expect(verifyNotice(null, null)).toBeNull()
  })
})
