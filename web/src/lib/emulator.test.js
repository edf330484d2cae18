import { describe, expect, it } from 'vitest'
import { emulatorGoogleClaims, fnv1a } from './emulator.js'

describe('emulatorGoogleClaims', () => {
  it('gives the same account for the same email, whatever its case', () => {
    const a = emulatorGoogleClaims(' Ada.Lovelace@Example.com ')
    expect(a).toEqual({ sub: `emu-google-${fnv1a('ada.lovelace@example.com')}`, email: 'ada.lovelace@example.com', email_verified: true, name: 'Ada Lovelace' })
    expect(emulatorGoogleClaims('ada.lovelace@example.com').sub).toBe(a.sub)
    expect(emulatorGoogleClaims('bob@example.com').sub).not.toBe(a.sub)
  })
  it.each(['', 'nope', 'a@b', null])('refuses %s', (e) => {
    expect(() => emulatorGoogleClaims(e)).toThrow(/email/)
  })
  it('fnv1a is the standard 32-bit hash', () => {
    expect(fnv1a('')).toBe('811c9dc5')
    expect(fnv1a('a')).toBe('e40c292c')
  })
})
