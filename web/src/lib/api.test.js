import { describe, expect, it } from 'vitest'
import { createApi } from './api.js'
import { ApiError } from './errors.js'

function fakeFetch(responses) {
  const calls = []
  const fetchImpl = async (url, init) => {
    calls.push({ url, ...init })
    const r = responses.shift()
    if (r instanceof Error) throw r
    const headers = new Map(Object.entries(r.headers || {}))
    return {
      ok: r.status >= 200 && r.status < 300,
      status: r.status,
      headers: { get: (k) => headers.get(k) ?? null },
      text: async () => (typeof r.body === 'string' ? r.body : r.body === undefined ? '' : JSON.stringify(r.body)),
    }
  }
  return { calls, fetchImpl }
}

describe('createApi', () => {
  it('sends the ID token and unwraps the user', async () => {
    const { calls, fetchImpl } = fakeFetch([{ status: 200, body: { user: { uid: 'u1', plan: 'Free', credits: 50 } } }])
    const api = createApi({ origin: 'https://x.test/', getToken: async () => 'tok', fetchImpl })
    expect(await api.user()).toEqual({ uid: 'u1', plan: 'Free', credits: 50 })
    expect(calls[0].url).toBe('https://x.test/api/user')
    expect(calls[0].headers.Authorization).toBe('Bearer tok')
  })

  it('retries a 401 once with a refreshed token', async () => {
    const { calls, fetchImpl } = fakeFetch([
      { status: 401, body: { error: { code: 'unauthenticated', message: 'Token expired.' } } },
      { status: 200, body: { keys: [] } },
    ])
    const tokens = []
    const api = createApi({ getToken: async (force) => (tokens.push(force), force ? 'new' : 'old'), fetchImpl })
    expect(await api.keys()).toEqual([])
    expect(tokens).toEqual([false, true])
    expect(calls.map((c) => c.headers.Authorization)).toEqual(['Bearer old', 'Bearer new'])
  })

  it("throws the contract's error message and code", async () => {
    const { fetchImpl } = fakeFetch([
      { status: 409, body: { error: { code: 'already_subscribed', message: 'You already have a subscription.' } } },
    ])
    const api = createApi({ getToken: async () => 't', fetchImpl })
    const err = await api.checkout('Basic', true).catch((e) => e)
    expect(err).toBeInstanceOf(ApiError)
    expect(err.status).toBe(409)
    expect(err.code).toBe('already_subscribed')
    expect(err.message).toBe('You already have a subscription.')
  })

  it('posts the checkout body as JSON', async () => {
    const { calls, fetchImpl } = fakeFetch([{ status: 200, body: { sessionId: 'cs_1', url: '/dev/checkout/cs_1' } }])
    const api = createApi({ getToken: async () => 't', fetchImpl })
    expect(await api.checkout('Basic', true)).toEqual({ sessionId: 'cs_1', url: '/dev/checkout/cs_1' })
    expect(calls[0].method).toBe('POST')
    expect(JSON.parse(calls[0].body)).toEqual({ plan: 'Basic', subscribe: true })
    expect(calls[0].headers['Content-Type']).toBe('application/json')
  })

  it('refuses a signed-in call with no user', async () => {
    const { calls, fetchImpl } = fakeFetch([])
    const api = createApi({ getToken: async () => null, fetchImpl })
    await expect(api.user()).rejects.toMatchObject({ status: 401, code: 'unauthenticated' })
    expect(calls).toHaveLength(0)
  })

  it('revokes a key by id and accepts 204', async () => {
    const { calls, fetchImpl } = fakeFetch([{ status: 204 }])
    const api = createApi({ getToken: async () => 't', fetchImpl })
    await api.revokeKey('a/b')
    expect(calls[0]).toMatchObject({ url: '/api/keys/a%2Fb', method: 'DELETE' })
  })

  it('reads plans without a token', async () => {
    const { calls, fetchImpl } = fakeFetch([{ status: 200, body: { plans: [{ name: 'Free' }] } }])
    const api = createApi({ getToken: async () => 'never', fetchImpl })
    expect(await api.plans()).toEqual([{ name: 'Free' }])
    expect(calls[0].headers.Authorization).toBeUndefined()
  })

  it('meters with the API key as a bearer and reads the credits', async () => {
    const { calls, fetchImpl } = fakeFetch([{ status: 200, body: { credits: 49 }, headers: { 'X-Credits-Remaining': '49' } }])
    const api = createApi({ getToken: async () => 'id-token', fetchImpl })
    expect(await api.meter('  pm_secret \n')).toEqual({ credits: 49 })
    expect(calls[0].headers.Authorization).toBe('Bearer pm_secret')
    expect(calls[0].body).toBeUndefined()
  })

  it('meters: 402 is an insufficient_credits error', async () => {
    const { fetchImpl } = fakeFetch([
      { status: 402, body: { error: { code: 'insufficient_credits', message: 'No credits left.' } } },
    ])
    const api = createApi({ fetchImpl })
    await expect(api.meter('k')).rejects.toMatchObject({ status: 402, code: 'insufficient_credits', message: 'No credits left.' })
  })

  it('ledger: null when the server does not offer it, entries when it does', async () => {
    const { fetchImpl } = fakeFetch([
      { status: 404, body: '404 page not found\n' },
      { status: 200, body: { entries: [{ kind: 'grant', amount: 50 }] } },
    ])
    const api = createApi({ getToken: async () => 't', fetchImpl })
    expect(await api.ledger()).toBeNull()
    expect(await api.ledger()).toEqual([{ kind: 'grant', amount: 50 }])
  })

  it('ledger: other failures are errors', async () => {
    const { fetchImpl } = fakeFetch([{ status: 500, body: { error: { code: 'internal', message: 'Internal error.' } } }])
    const api = createApi({ getToken: async () => 't', fetchImpl })
    await expect(api.ledger()).rejects.toMatchObject({ message: 'Internal error.' })
  })

  it('a body that is not JSON on success is a readable error', async () => {
    const { fetchImpl } = fakeFetch([{ status: 200, body: '<html>' }])
    const api = createApi({ fetchImpl })
    await expect(api.plans()).rejects.toMatchObject({ code: 'bad_response' })
  })

  it('usage asks for the number of days', async () => {
    const { calls, fetchImpl } = fakeFetch([{ status: 200, body: { days: [{ date: '2026-11-26', credits: 3 }] } }])
    const api = createApi({ getToken: async () => 't', fetchImpl })
    expect(await api.usage(30)).toEqual([{ date: '2026-11-26', credits: 3 }])
    expect(calls[0].url).toBe('/api/usage?days=30')
  })
})
