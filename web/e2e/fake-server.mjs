#!/usr/bin/env node
// A stand-in for the Paymeter backend, in memory, for testing the web app
// before (and apart from) the real stack. It serves:
//   - the built app (SPA: unknown non-API paths get index.html),
//   - the HTTP contract (shared/docs/api.md): /api/plans, /api/user, /api/keys,
//     /api/checkout, /api/cancel, /api/portal, /api/usage, /api/meter, and
//     /api/ledger (not yet in the contract; FAKE_LEDGER=0 turns it off),
//   - the Stripe stand-in's pages the journey clicks through: /dev/checkout/{id}
//     (Pay, Cancel) and /dev/portal/{customer},
//   - the part of the Firebase Auth emulator's REST API that email+password
//     sign-in uses, so the app can be built with VITE_AUTH_EMULATOR_URL set to
//     this server's origin. With FAKE_AUTH=0 it leaves auth to a real emulator
//     and still accepts that emulator's (unsigned) ID tokens.
// Usage: node e2e/fake-server.mjs [--port 0] [--dist dist]; prints
// "Paymeter running at http://127.0.0.1:PORT".
import { createHash, randomBytes } from 'node:crypto'
import { readFile, stat } from 'node:fs/promises'
import http from 'node:http'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const here = path.dirname(fileURLToPath(import.meta.url))
const args = process.argv.slice(2)
const arg = (name, dflt) => {
  const i = args.indexOf(`--${name}`)
  return i >= 0 ? args[i + 1] : dflt
}
const PORT = Number(arg('port', process.env.PORT || 0))
const DIST = path.resolve(here, '..', arg('dist', process.env.FAKE_DIST || 'dist'))
const PROJECT = process.env.GOOGLE_CLOUD_PROJECT || 'demo-paymeter'
const FAKE_AUTH = process.env.FAKE_AUTH !== '0'
const LEDGER = process.env.FAKE_LEDGER !== '0'
const WEBHOOK_DELAY_MS = Number(process.env.FAKE_WEBHOOK_DELAY_MS ?? 1500)

const DAY = 86_400_000
const now = () => Date.now()
const iso = (ms) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z')
const id = (p, n = 12) => p + randomBytes(n).toString('hex')

const plans = [
  { name: 'Free', credits: 50, period: 'week', prices: [] },
  { name: 'Basic', credits: 1000, period: 'month', prices: [{ kind: 'instant', amount: 500, currency: 'gbp' }, { kind: 'monthly', amount: 500, currency: 'gbp' }] },
  { name: 'Power', credits: 100000, period: 'month', prices: [{ kind: 'instant', amount: 5000, currency: 'gbp' }, { kind: 'monthly', amount: 5000, currency: 'gbp' }] },
]

// ---- state
const authUsers = new Map() // email -> {uid, email, password, emailVerified, createdAt}
const refreshTokens = new Map() // token -> uid
const accounts = new Map() // uid -> account
const keys = new Map() // sha256 -> key
const sessions = new Map() // id -> {uid, plan, subscribe, status}

function account(uid, email) {
  let a = accounts.get(uid)
  if (!a) {
    const t = now()
    a = {
      uid, email, plan: 'Free', customerId: id('cus_', 6), subscription: null, nextGrantAt: t + 7 * DAY,
      grants: [{ source: 'free', remaining: 50, expiresAt: t + 7 * DAY }],
      usage: new Map(), ledger: [{ id: `grant-free-${t}`, kind: 'grant', source: 'free', credits: 50, at: t, expiresAt: t + 7 * DAY, note: 'Weekly Free credits (week 1)' }],
    }
    accounts.set(uid, a)
  }
  return a
}
const credits = (a) => a.grants.reduce((s, g) => s + g.remaining, 0)
function userJSON(a) {
  const live = a.grants.filter((g) => g.remaining > 0 && (g.expiresAt === null || g.expiresAt > now()))
  return {
    uid: a.uid, email: a.email, plan: a.plan, credits: credits(a),
    subscription: a.subscription && { ...a.subscription, currentPeriodEnd: iso(a.subscription.currentPeriodEnd) },
    nextGrantAt: a.plan === 'Free' ? iso(a.nextGrantAt) : null,
    grants: live.map((g) => ({ source: g.source, remaining: g.remaining, expiresAt: g.expiresAt === null ? null : iso(g.expiresAt) })),
    freeCreditsPending: null, // like make dev: REQUIRE_VERIFIED_EMAIL off
  }
}
function grant(a, source, amount, expiresAt, note) {
  a.grants.push({ source, remaining: amount, expiresAt })
  a.ledger.push({ id: id('grant-', 6), kind: 'grant', source, credits: amount, at: now(), expiresAt, note })
}

// ---- http helpers
function send(res, status, body, headers = {}) {
  const text = body === undefined ? '' : JSON.stringify(body)
  res.writeHead(status, { ...(text ? { 'Content-Type': 'application/json' } : {}), 'Cache-Control': 'no-store', ...headers })
  res.end(text)
}
const fail = (res, status, code, message) => send(res, status, { error: { code, message } })
async function readBody(req) {
  const chunks = []
  for await (const c of req) chunks.push(c)
  return Buffer.concat(chunks).toString('utf8')
}
async function readJSON(req) {
  const t = await readBody(req)
  if (!t) return {}
  try {
    return JSON.parse(t)
  } catch {
    return null
  }
}
const b64url = (o) => Buffer.from(JSON.stringify(o)).toString('base64url')

// ---- tokens, in the Auth emulator's shape (unsigned JWT)
function idToken(u) {
  const t = Math.floor(now() / 1000)
  return `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url({
    iss: `https://securetoken.google.com/${PROJECT}`, aud: PROJECT, auth_time: t, user_id: u.uid, sub: u.uid, iat: t, exp: t + 3600,
    email: u.email, email_verified: !!u.emailVerified,
    firebase: { identities: { email: [u.email] }, sign_in_provider: 'password' },
  })}.`
}
function verifyIdToken(header) {
  const m = /^Bearer\s+(.+)$/i.exec(header || '')
  if (!m) return null
  try {
    const p = JSON.parse(Buffer.from(m[1].split('.')[1], 'base64url').toString('utf8'))
    if (p.aud !== PROJECT || !(p.exp * 1000 > now()) || !p.sub) return null
    return { uid: p.sub, email: p.email || '' }
  } catch {
    return null
  }
}

// ---- the Auth emulator's REST subset
function authError(res, message) {
  send(res, 400, { error: { code: 400, message, errors: [{ message, reason: 'invalid', domain: 'global' }] } }, cors())
}
const cors = () => ({ 'Access-Control-Allow-Origin': '*', 'Access-Control-Allow-Headers': '*', 'Access-Control-Allow-Methods': 'GET,POST,OPTIONS' })
function session(u) {
  const rt = id('rt_', 16)
  refreshTokens.set(rt, u.uid)
  return { kind: 'identitytoolkit#VerifyPasswordResponse', localId: u.uid, email: u.email, idToken: idToken(u), refreshToken: rt, expiresIn: '3600', registered: true }
}
const userByUid = (uid) => [...authUsers.values()].find((u) => u.uid === uid)
async function handleAuth(req, res, url) {
  if (req.method === 'OPTIONS') return send(res, 204, undefined, cors())
  const p = url.pathname
  if (p === '/securetoken.googleapis.com/v1/token') {
    const form = new URLSearchParams(await readBody(req))
    const uid = refreshTokens.get(form.get('refresh_token'))
    const u = uid && userByUid(uid)
    if (!u) return authError(res, 'INVALID_REFRESH_TOKEN')
    return send(res, 200, { access_token: idToken(u), expires_in: '3600', id_token: idToken(u), project_id: PROJECT, refresh_token: form.get('refresh_token'), token_type: 'Bearer', user_id: u.uid }, cors())
  }
  const body = (await readJSON(req)) || {}
  const op = p.replace('/identitytoolkit.googleapis.com/v1/', '')
  switch (op) {
    case 'accounts:signUp': {
      const email = String(body.email || '').toLowerCase()
      if (!/^[^@\s]+@[^@\s]+$/.test(email)) return authError(res, 'INVALID_EMAIL')
      if (authUsers.has(email)) return authError(res, 'EMAIL_EXISTS')
      if (String(body.password || '').length < 6) return authError(res, 'WEAK_PASSWORD : Password should be at least 6 characters')
      const u = { uid: id('', 10), email, password: body.password, emailVerified: false, createdAt: now(), providers: ['password'] }
      authUsers.set(email, u)
      return send(res, 200, { ...session(u), kind: 'identitytoolkit#SignupNewUserResponse' }, cors())
    }
    case 'accounts:signInWithPassword': {
      const u = authUsers.get(String(body.email || '').toLowerCase())
      if (!u || u.password !== body.password) return authError(res, 'INVALID_LOGIN_CREDENTIALS')
      return send(res, 200, session(u), cors())
    }
    case 'accounts:lookup': {
      const who = verifyIdToken(`Bearer ${body.idToken}`)
      const u = who && userByUid(who.uid)
      if (!u) return authError(res, 'INVALID_ID_TOKEN')
      return send(res, 200, {
        kind: 'identitytoolkit#GetAccountInfoResponse',
        users: [{
          localId: u.uid, email: u.email, emailVerified: u.emailVerified, passwordHash: 'x', passwordUpdatedAt: u.createdAt,
          providerUserInfo: u.providers.map((pid) => ({ providerId: pid, email: u.email, federatedId: pid === 'password' ? u.email : u.googleSub, rawId: pid === 'password' ? u.email : u.googleSub })),
          validSince: String(Math.floor(u.createdAt / 1000)), createdAt: String(u.createdAt), lastLoginAt: String(now()), lastRefreshAt: iso(now()),
        }],
      }, cors())
    }
    case 'accounts:signInWithIdp': {
      // The emulator's offline Google sign-in: an unsigned JSON id_token with sub and email.
      const form = new URLSearchParams(body.postBody || '')
      let claims = null
      try {
        claims = JSON.parse(form.get('id_token') || '')
      } catch {
        // not JSON claims
      }
      if (form.get('providerId') !== 'google.com' || !claims?.sub || !claims?.email) return authError(res, 'INVALID_IDP_RESPONSE')
      const email = String(claims.email).toLowerCase()
      let u = authUsers.get(email)
      const isNewUser = !u
      if (!u) {
        u = { uid: id('', 10), email, password: null, emailVerified: true, createdAt: now(), providers: [] }
        authUsers.set(email, u)
      }
      if (!u.providers.includes('google.com')) u.providers.push('google.com')
      u.googleSub = claims.sub
      u.emailVerified = true
      return send(res, 200, {
        ...session(u), kind: 'identitytoolkit#VerifyAssertionResponse', providerId: 'google.com', federatedId: `https://accounts.google.com/${claims.sub}`,
        emailVerified: true, isNewUser, rawUserInfo: JSON.stringify(claims), displayName: claims.name || '',
      }, cors())
    }
    case 'accounts:sendOobCode': {
      const who = body.idToken ? verifyIdToken(`Bearer ${body.idToken}`) : null
      const email = who?.email || body.email
      console.log(`[fake auth] ${body.requestType} link for ${email}`)
      return send(res, 200, { kind: 'identitytoolkit#GetOobConfirmationCodeResponse', email }, cors())
    }
    default:
      return authError(res, `UNSUPPORTED_IN_FAKE: ${op}`)
  }
}

// ---- the contract
function apiKeyFrom(req, body) {
  const m = /^Bearer\s+(.+)$/i.exec(req.headers.authorization || '')
  if (m) return m[1].trim()
  if (req.headers['x-api-key']) return String(req.headers['x-api-key']).trim()
  return body && typeof body.key === 'string' ? body.key : null
}
const hash = (k) => createHash('sha256').update(k).digest('hex')
const publicOrigin = (req) => process.env.PUBLIC_URL || `http://${req.headers.host}`

async function handleApi(req, res, url) {
  const p = url.pathname
  const route = `${req.method} ${p}`
  if (route === 'GET /api/plans') return send(res, 200, { plans })

  if (route === 'POST /api/meter') {
    const text = await readBody(req)
    let body = null
    if (text) {
      try {
        body = JSON.parse(text)
      } catch {
        return fail(res, 400, 'bad_request', 'The request body is not valid JSON.')
      }
    }
    const key = apiKeyFrom(req, body)
    if (!key) return fail(res, 400, 'bad_request', 'Send your API key in the Authorization header.')
    const k = keys.get(hash(key))
    if (!k || k.revoked) return fail(res, 401, 'invalid_api_key', 'This API key is not valid or has been revoked.')
    const a = accounts.get(k.uid)
    const live = a.grants.filter((g) => g.remaining > 0 && (g.expiresAt === null || g.expiresAt > now())).sort((x, y) => (x.expiresAt ?? Infinity) - (y.expiresAt ?? Infinity))
    if (!live.length) return fail(res, 402, 'insufficient_credits', 'You have no credits left. Buy more or wait for your next free grant.')
    live[0].remaining--
    k.lastUsedAt = now()
    const day = iso(now()).slice(0, 10)
    a.usage.set(day, (a.usage.get(day) || 0) + 1)
    const left = credits(a)
    return send(res, 200, { credits: left }, { 'X-Credits-Remaining': String(left) })
  }

  const who = verifyIdToken(req.headers.authorization)
  if (!who) return fail(res, 401, 'unauthenticated', 'Please sign in again.')
  const a = account(who.uid, who.email)

  if (route === 'GET /api/user') return send(res, 200, { user: userJSON(a) })
  if (route === 'GET /api/keys') {
    const list = [...keys.values()].filter((k) => k.uid === a.uid && !k.revoked)
    return send(res, 200, { keys: list.map((k) => ({ id: k.id, name: k.name, prefix: k.prefix, createdAt: iso(k.createdAt), lastUsedAt: k.lastUsedAt ? iso(k.lastUsedAt) : null })) })
  }
  if (route === 'POST /api/keys') {
    const body = await readJSON(req)
    const name = typeof body?.name === 'string' ? body.name.trim() : ''
    if (!name || name.length > 64) return fail(res, 400, 'bad_request', 'Give the key a name of 1 to 64 characters.')
    const secret = id('pm_', 24)
    const k = { id: id('key_', 8), uid: a.uid, name, prefix: secret.slice(0, 11), createdAt: now(), lastUsedAt: null, revoked: false }
    keys.set(hash(secret), k)
    return send(res, 201, { id: k.id, name, prefix: k.prefix, key: secret, createdAt: iso(k.createdAt) })
  }
  if (req.method === 'DELETE' && p.startsWith('/api/keys/')) {
    const kid = decodeURIComponent(p.slice('/api/keys/'.length))
    const k = [...keys.values()].find((x) => x.id === kid && x.uid === a.uid && !x.revoked)
    if (!k) return fail(res, 404, 'not_found', 'There is no such key.')
    k.revoked = true
    return send(res, 204)
  }
  if (route === 'POST /api/checkout') {
    const body = await readJSON(req)
    const plan = plans.find((x) => x.name === body?.plan)
    if (!plan || !plan.prices.length) return fail(res, 400, 'invalid_plan', 'Choose Basic or Power; Free needs no checkout.')
    if (body.subscribe && a.subscription) return fail(res, 409, 'already_subscribed', 'You already have a subscription. Change it in Manage billing.')
    const sid = id('cs_test_', 12)
    sessions.set(sid, { uid: a.uid, plan: plan.name, subscribe: !!body.subscribe, status: 'open', origin: publicOrigin(req) })
    return send(res, 200, { sessionId: sid, url: `${publicOrigin(req)}/dev/checkout/${sid}` })
  }
  if (route === 'POST /api/cancel') {
    a.subscription = null
    a.plan = 'Free'
    if (a.nextGrantAt < now()) a.nextGrantAt = now() + 7 * DAY
    return send(res, 200, { user: userJSON(a) })
  }
  if (route === 'POST /api/portal') return send(res, 200, { url: `${publicOrigin(req)}/dev/portal/${a.customerId}` })
  if (route === 'GET /api/usage') {
    const n = Math.min(Math.max(Number(url.searchParams.get('days')) || 30, 1), 90)
    const days = [...a.usage.entries()].filter(([d]) => d >= iso(now() - (n - 1) * DAY).slice(0, 10)).map(([date, c]) => ({ date, credits: c }))
    // A little history so the chart has shape: two earlier days.
    if (process.env.FAKE_HISTORY !== '0') days.push({ date: iso(now() - 3 * DAY).slice(0, 10), credits: 12 }, { date: iso(now() - 9 * DAY).slice(0, 10), credits: 30 })
    return send(res, 200, { days })
  }
  if (route === 'GET /api/notifications' || route === 'PUT /api/notifications') {
    a.notify ||= { enabled: true, threshold: 0, billingEmails: true }
    if (req.method === 'PUT') {
      const body = await readJSON(req)
      if (body?.lowBalance?.enabled !== undefined) a.notify.enabled = !!body.lowBalance.enabled
      if (body?.lowBalance?.threshold !== undefined) a.notify.threshold = Number(body.lowBalance.threshold) || 0
      if (body?.billingEmails !== undefined) a.notify.billingEmails = !!body.billingEmails
    }
    const def = Math.max(1, Math.floor(((plans.find((x) => x.name === a.plan) || plans[0]).credits * 20) / 100))
    return send(res, 200, {
      lowBalance: { enabled: a.notify.enabled, threshold: a.notify.threshold || def, defaultThreshold: def, custom: a.notify.threshold > 0 },
      billingEmails: a.notify.billingEmails,
      moneyEmails: true,
    })
  }
  if (route === 'GET /api/ledger' && LEDGER) {
    const entries = a.ledger.map((e) => ({ ...e, at: iso(e.at), ...(e.expiresAt ? { expiresAt: iso(e.expiresAt) } : { expiresAt: undefined }) }))
    return send(res, 200, { entries: entries.reverse() })
  }
  return fail(res, 404, 'not_found', 'No such API route.')
}

// ---- the Stripe stand-in's pages
const page = (title, body) => `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>${title}</title>
<style>body{font-family:system-ui,sans-serif;max-width:480px;margin:40px auto;padding:0 16px}button,a.b{font:inherit;padding:10px 16px;margin:6px 6px 0 0;min-height:44px;display:inline-block}</style></head><body>${body}</body></html>`
function complete(s) {
  const a = accounts.get(s.uid)
  const plan = plans.find((x) => x.name === s.plan)
  const t = now()
  if (s.subscribe) {
    a.plan = plan.name
    a.subscription = { plan: plan.name, status: 'active', currentPeriodEnd: t + 30 * DAY, cancelAtPeriodEnd: false, id: id('sub_', 8) }
    grant(a, 'subscription', plan.credits, t + 30 * DAY, `${plan.name} subscription credits until ${new Date(t + 30 * DAY).toUTCString().slice(5, 16)}`)
  } else {
    grant(a, 'topup', plan.credits, null, `${plan.name} credits bought once, never expire`)
  }
}
async function handleDev(req, res, url) {
  const m = /^\/dev\/checkout\/([^/]+)(\/complete)?$/.exec(url.pathname)
  if (m) {
    const s = sessions.get(m[1])
    if (!s) return fail(res, 404, 'not_found', 'No such checkout session.')
    const plan = plans.find((x) => x.name === s.plan)
    const price = plan.prices.find((x) => x.kind === (s.subscribe ? 'monthly' : 'instant'))
    if (req.method === 'GET' && !m[2]) {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' })
      return res.end(page('Checkout (stand-in)', `<h1>Checkout (offline stand-in)</h1>
<p>${plan.name}: ${plan.credits} credits, £${(price.amount / 100).toFixed(2)}${s.subscribe ? ' a month' : ' once'}.</p>
<form method="post" action="/dev/checkout/${m[1]}/complete"><button type="submit">Pay</button>
<a class="b" href="${s.origin}/checkout/cancel">Cancel</a></form>`))
    }
    if (req.method === 'POST' && m[2]) {
      if (s.status === 'open') {
        s.status = 'complete'
        // Like Stripe, the webhook lands a little after the browser is sent back.
        setTimeout(() => complete(s), WEBHOOK_DELAY_MS)
      }
      res.writeHead(303, { Location: `${s.origin}/checkout/success?session_id=${m[1]}` })
      return res.end()
    }
  }
  const pm = /^\/dev\/portal\/([^/]+)$/.exec(url.pathname)
  if (pm && req.method === 'GET') {
    const a = [...accounts.values()].find((x) => x.customerId === pm[1])
    if (!a) return fail(res, 404, 'not_found', 'No such customer.')
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' })
    return res.end(page('Billing portal (stand-in)', `<h1>Billing portal (offline stand-in)</h1>
<p>Customer ${a.customerId}: plan ${a.plan}${a.subscription ? `, subscription ${a.subscription.status}${a.subscription.cancelAtPeriodEnd ? ', cancelling at period end' : ''}` : ', no subscription'}.</p>
${a.subscription ? `<form method="post" action="/dev/portal/${pm[1]}/cancel-at-period-end"><button type="submit">Cancel at period end</button></form>` : ''}
<p><a class="b" href="${publicOrigin(req)}/dashboard">Return to Paymeter</a></p>`))
  }
  const pc = /^\/dev\/portal\/([^/]+)\/cancel-at-period-end$/.exec(url.pathname)
  if (pc && req.method === 'POST') {
    const a = [...accounts.values()].find((x) => x.customerId === pc[1])
    if (a?.subscription) a.subscription.cancelAtPeriodEnd = true
    res.writeHead(303, { Location: `/dev/portal/${pc[1]}` })
    return res.end()
  }
  const pd = /^\/dev\/subscriptions\/fail$/.exec(url.pathname) // test hook: mark every subscription past_due
  if (pd && req.method === 'POST') {
    for (const a of accounts.values()) if (a.subscription) a.subscription.status = 'past_due'
    return send(res, 200, { ok: true })
  }
  if (url.pathname === '/dev/state') return send(res, 200, { accounts: [...accounts.values()].map(userJSON), sessions: Object.fromEntries(sessions) })
  return fail(res, 404, 'not_found', 'No such stand-in route.')
}

// ---- static files with the SPA fallback
const types = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.css': 'text/css', '.svg': 'image/svg+xml', '.png': 'image/png', '.ico': 'image/x-icon', '.json': 'application/json' }
async function handleStatic(req, res, url) {
  let file = path.join(DIST, path.normalize(decodeURIComponent(url.pathname)).replace(/^(\.\.[/\\])+/, ''))
  if (!file.startsWith(DIST)) return fail(res, 404, 'not_found', 'Not found.')
  let st = await stat(file).catch(() => null)
  if (!st || st.isDirectory()) {
    if (path.extname(url.pathname) && !url.pathname.endsWith('.html')) {
      res.writeHead(404, { 'Content-Type': 'text/plain' })
      return res.end('not found')
    }
    file = path.join(DIST, 'index.html')
    st = await stat(file).catch(() => null)
    if (!st) {
      res.writeHead(500, { 'Content-Type': 'text/plain' })
      return res.end(`no build at ${DIST}: run npm run build`)
    }
  }
  const body = await readFile(file)
  const cache = file.includes(`${path.sep}assets${path.sep}`) ? 'public, max-age=31536000, immutable' : 'no-cache'
  res.writeHead(200, { 'Content-Type': types[path.extname(file)] || 'application/octet-stream', 'Cache-Control': cache })
  res.end(body)
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://x')
  try {
    if (FAKE_AUTH && (url.pathname.startsWith('/identitytoolkit.googleapis.com/') || url.pathname.startsWith('/securetoken.googleapis.com/'))) return await handleAuth(req, res, url)
    if (url.pathname.startsWith('/api/')) return await handleApi(req, res, url)
    if (url.pathname.startsWith('/dev/')) return await handleDev(req, res, url)
    return await handleStatic(req, res, url)
  } catch (err) {
    console.error(err)
    if (!res.headersSent) fail(res, 500, 'internal', 'Internal error.')
  }
})
server.listen(PORT, '127.0.0.1', () => {
  console.log(`Paymeter running at http://127.0.0.1:${server.address().port}`)
})
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => server.close(() => process.exit(0)))
