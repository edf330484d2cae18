import { describe, expect, it } from 'vitest'
import { createMemoryHistory, createRouter } from 'vue-router'
import { redirectFor, routeRecords, safeNext, searchOf } from './router.js'
import { readConfig } from './config.js'

// The app's route table in Vue Router, as src/router.js builds it (the views stubbed).
const router = createRouter({ history: createMemoryHistory(), routes: routeRecords(() => ({ render: () => null })) })
const matchRoute = (p) => router.resolve(p)

describe('matchRoute', () => {
  it.each([
    ['/', 'home'],
    ['/dashboard', 'dashboard'],
    ['/dashboard/', 'dashboard'],
    ['/checkout/success', 'checkout-success'],
    ['/checkout/cancel', 'checkout-cancel'],
    ['/nope', 'not-found'],
    ['', 'home'],
  ])('%s', (p, name) => expect(matchRoute(p).name).toBe(name))
})

describe('searchOf', () => {
  it.each([
    ['/checkout/success?session_id=cs_1', '?session_id=cs_1'],
    ['/signin?next=%2Fkeys#top', '?next=%2Fkeys'],
    ['/keys', ''],
  ])('%s', (p, want) => expect(searchOf(matchRoute(p))).toBe(want))
})

describe('redirectFor', () => {
  it('sends signed-out people to sign in, remembering where they went', () => {
    expect(redirectFor(matchRoute('/checkout/success'), false, '?session_id=cs_1')).toBe(
      '/signin?next=%2Fcheckout%2Fsuccess%3Fsession_id%3Dcs_1',
    )
    expect(redirectFor(matchRoute('/pricing'), false)).toBeNull()
  })
  it('sends signed-in people on to where they were going, or the dashboard', () => {
    expect(redirectFor(matchRoute('/signin'), true, '?next=%2Fkeys')).toBe('/keys')
    expect(redirectFor(matchRoute('/signup'), true, '?next=https%3A%2F%2Fevil.test')).toBe('/dashboard')
    expect(redirectFor(matchRoute('/'), true)).toBe('/dashboard')
    expect(redirectFor(matchRoute('/keys'), true)).toBeNull()
  })
  it.each([
    ['/keys', '/keys'],
    ['//evil.test', null],
    ['/\\evil.test', null],
    ['https://evil.test', null],
    [null, null],
  ])('safeNext(%s)', (n, want) => expect(safeNext(n)).toBe(want))
})

describe('readConfig', () => {
  it('defaults to the demo project on the same origin', () => {
    expect(readConfig({})).toEqual({
      firebase: { apiKey: 'demo-api-key', authDomain: 'demo-paymeter.firebaseapp.com', projectId: 'demo-paymeter' },
      emulatorUrl: '',
      apiOrigin: '',
      problems: [],
    })
  })
  it('reads a real project and flags a missing API key', () => {
    const c = readConfig({ VITE_FIREBASE_PROJECT_ID: 'acme-prod', VITE_API_ORIGIN: 'https://api.acme.test/' })
    expect(c.firebase.apiKey).toBe('')
    expect(c.apiOrigin).toBe('https://api.acme.test')
    expect(c.problems).toHaveLength(1)
  })
  it('takes the emulator URL without a trailing slash', () => {
    expect(readConfig({ VITE_AUTH_EMULATOR_URL: 'http://127.0.0.1:9099/' }).emulatorUrl).toBe('http://127.0.0.1:9099')
  })
})
