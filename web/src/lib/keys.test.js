import { describe, expect, it } from 'vitest'
import { keyForm, keyOptionsBody, keyState, limitsInWords } from './keys.js'

describe('limitsInWords', () => {
  it.each([
    [{}, 'No limits: as fast as you call, until the credits run out.'],
    [{ perSecond: 1, burst: 1 }, 'At most 1 call a second; faster calls are refused (HTTP 429) and cost nothing.'],
    [{ perSecond: 5, burst: 20, creditsPerDay: 1000 },
      'At most 5 calls a second, with bursts of up to 20 at once; faster calls are refused (HTTP 429) and cost nothing; it spends at most 1,000 credits a day (the day starts at 00:00 UTC).'],
    [{ creditsPerDay: 1 }, 'Spends at most 1 credit a day (the day starts at 00:00 UTC).'],
  ])('%j', (limits, want) => expect(limitsInWords(limits)).toBe(want))
})

describe('keyOptionsBody', () => {
  it('sends only what was filled in on create', () => {
    expect(keyOptionsBody({ name: ' ci ', perSecond: '1', burst: '', creditsPerDay: '', scopes: '', expires: '' }))
      .toEqual({ body: { name: 'ci', limits: { perSecond: 1 } } })
  })
  it('clears what was emptied on edit', () => {
    expect(keyOptionsBody({ name: 'ci', perSecond: '', scopes: '', expires: '' }, { edit: true }))
      .toEqual({ body: { name: 'ci', limits: {}, scopes: [], expiresAt: null } })
  })
  it('reads scopes and a UTC expiry', () => {
    expect(keyOptionsBody({ name: 'x', scopes: '/api/meter, /v1/', expires: '2027-01-31T12:00' }).body)
      .toEqual({ name: 'x', scopes: ['/api/meter', '/v1/'], expiresAt: '2027-01-31T12:00:00Z' })
  })
  it.each([['0'], ['-1'], ['1.5'], ['lots']])('refuses %s', (v) => {
    expect(keyOptionsBody({ name: 'x', perSecond: v }).error).toMatch(/whole number/)
  })
  it('refuses a burst alone', () => expect(keyOptionsBody({ name: 'x', burst: '3' }).error).toMatch(/burst/))
  it('round-trips a key', () => {
    const key = { name: 'p', limits: { perSecond: 2, burst: 4 }, scopes: ['/v1/'], expiresAt: '2027-01-31T12:00:00Z' }
    expect(keyOptionsBody(keyForm(key), { edit: true }).body)
      .toEqual({ name: 'p', limits: { perSecond: 2, burst: 4 }, scopes: ['/v1/'], expiresAt: '2027-01-31T12:00:00Z' })
  })
})

describe('keyState', () => {
  const utc = { timeZone: 'UTC' }
  it('says how long a key works', () => {
    expect(keyState({})).toBe('Works until revoked')
    expect(keyState({ expired: true, rolledTo: 'k2', expiresAt: '2027-01-01T00:00:00Z' }, utc)).toMatch(/grace period has ended/)
    expect(keyState({ rolledTo: 'k2', expiresAt: '2027-01-01T00:00:00Z' }, utc)).toMatch(/^Replaced: works until/)
    expect(keyState({ expired: true, expiresAt: '2027-01-01T00:00:00Z' }, utc)).toMatch(/^Expired/)
  })
})
