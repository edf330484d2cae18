// The client for the HTTP contract (docs/api.md). Nothing else in the
// app builds URLs or reads response bodies.
import { ApiError, apiErrorFrom } from './errors.js'

/**
 * createApi returns the contract's calls.
 * origin: '' for same origin, or e.g. 'https://api.example.com'.
 * getToken(forceRefresh): the signed-in user's Firebase ID token, or null.
 * fetchImpl: fetch, injectable for tests.
 */
export function createApi({ origin = '', getToken = async () => null, fetchImpl = (...a) => fetch(...a) } = {}) {
  const base = origin.replace(/\/+$/, '')

  async function send(method, path, { body, token, headers = {} } = {}) {
    const h = { Accept: 'application/json', ...headers }
    if (token) h.Authorization = `Bearer ${token}`
    let payload
    if (body !== undefined) {
      h['Content-Type'] = 'application/json'
      payload = JSON.stringify(body)
    }
    return fetchImpl(base + path, { method, headers: h, body: payload })
  }

  async function parse(res) {
    const text = await res.text()
    if (!res.ok) {
      const err = apiErrorFrom(res.status, text)
      const retry = res.headers?.get?.('Retry-After')
      if (retry) err.retryAfter = Number(retry)
      throw err
    }
    if (res.status === 204 || text === '') return null
    try {
      return JSON.parse(text)
    } catch {
      throw new ApiError(res.status, 'bad_response', 'The server sent an answer the app could not read.')
    }
  }

  // A signed-in call. On 401 it refreshes the ID token once and retries, so an
  // expired token never shows up as an error to the person.
  async function authed(method, path, opts = {}) {
    let token = await getToken(false)
    if (!token) throw new ApiError(401, 'unauthenticated', 'Please sign in first.')
    let res = await send(method, path, { ...opts, token })
    if (res.status === 401) {
      token = await getToken(true)
      if (token) res = await send(method, path, { ...opts, token })
    }
    return parse(res)
  }

  return {
    async plans() {
      return (await parse(await send('GET', '/api/plans'))).plans
    },
    async user() {
      return (await authed('GET', '/api/user')).user
    },
    async keys() {
      return (await authed('GET', '/api/keys')).keys
    },
    // body: {name, expiresAt?, scopes?, limits?} (lib/keys.js builds it).
    async createKey(body) {
      return authed('POST', '/api/keys', { body: typeof body === 'string' ? { name: body } : body })
    },
    async updateKey(id, body) {
      return authed('PATCH', `/api/keys/${encodeURIComponent(id)}`, { body })
    },
    // Resolves to the new key, secret included; the old one works graceSeconds more.
    async rollKey(id, graceSeconds) {
      return authed('POST', `/api/keys/${encodeURIComponent(id)}/roll`, { body: { graceSeconds } })
    },
    async revokeKey(id) {
      await authed('DELETE', `/api/keys/${encodeURIComponent(id)}`)
    },
    async checkout(plan, subscribe) {
      return authed('POST', '/api/checkout', { body: { plan, subscribe } })
    },
    async cancel() {
      return (await authed('POST', '/api/cancel')).user
    },
    async portal() {
      return (await authed('POST', '/api/portal')).url
    },
    async usage(days = 30) {
      return (await authed('GET', `/api/usage?days=${days}`)).days
    },
    // The ledger is not in the contract yet; null when the server does not offer it.
    async ledger() {
      try {
        const body = await authed('GET', '/api/ledger')
        return Array.isArray(body?.entries) ? body.entries : null
      } catch (err) {
        if (err instanceof ApiError && (err.status === 404 || err.status === 405)) return null
        throw err
      }
    },
    // The owner's notification settings: {lowBalance:{enabled,threshold,defaultThreshold,custom},billingEmails,moneyEmails}.
    async notifications() {
      return authed('GET', '/api/notifications')
    },
    // Saves any subset of {lowBalance:{enabled,threshold},billingEmails}; a threshold of 0 is the default.
    async saveNotifications(settings) {
      return authed('PUT', '/api/notifications', { body: settings })
    },
    // One metered call with an API key. Resolves to {credits}; a refusal
    // (401 invalid_api_key, 402 insufficient_credits, ...) throws ApiError.
    // One call to any metered route (an upstream's, like /v1/stats) with a
    // text body. Resolves to {status, text, cost, remaining, requestId};
    // a refusal throws ApiError.
    async callRoute(apiKey, method, route, text) {
      const headers = { Authorization: `Bearer ${apiKey.trim()}`, Accept: '*/*' }
      if (text) headers['Content-Type'] = 'text/plain'
      const res = await fetchImpl(base + route, { method, headers, body: method === 'GET' || !text ? undefined : text })
      const body = await res.text()
      if (!res.ok) throw apiErrorFrom(res.status, body)
      const h = (k) => res.headers?.get?.(k) ?? null
      return { status: res.status, text: body, cost: h('X-Credits-Cost'), remaining: h('X-Credits-Remaining'), requestId: h('X-Request-Id') }
    },
    async meter(apiKey) {
      const res = await send('POST', '/api/meter', { token: apiKey.trim() })
      const body = await parse(res)
      const header = res.headers?.get?.('X-Credits-Remaining')
      const credits = typeof body?.credits === 'number' ? body.credits : Number(header)
      return { credits }
    },
  }
}
