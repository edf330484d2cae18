// API key options in plain words, and the body a create or an edit sends.
import { formatCredits, formatDateTime } from './format.js'

const n = (v) => Number(v).toLocaleString('en-GB')

/** The key's limits as a sentence a person reads. */
export function limitsInWords(limits = {}) {
  const parts = []
  if (limits.perSecond) {
    const rate = limits.perSecond === 1 ? '1 call a second' : `${n(limits.perSecond)} calls a second`
    const burst = limits.burst && limits.burst !== limits.perSecond ? `, with bursts of up to ${n(limits.burst)} at once` : ''
    parts.push(`at most ${rate}${burst}; faster calls are refused (HTTP 429) and cost nothing`)
  }
  if (limits.creditsPerDay) {
    parts.push(`spends at most ${formatCredits(limits.creditsPerDay)} a day (the day starts at 00:00 UTC)`)
  }
  if (!parts.length) return 'No limits: as fast as you call, until the credits run out.'
  const s = parts.join('; it ')
  return s.charAt(0).toUpperCase() + s.slice(1) + '.'
}

/** The key's state: works, expires at, expired, rolled. */
export function keyState(key, opts = {}) {
  if (key.expired) return key.rolledTo ? 'Replaced: its grace period has ended' : `Expired ${formatDateTime(key.expiresAt, opts)}`
  if (key.rolledTo && key.expiresAt) return `Replaced: works until ${formatDateTime(key.expiresAt, opts)}`
  if (key.expiresAt) return `Works until ${formatDateTime(key.expiresAt, opts)}`
  return 'Works until revoked'
}

/**
 * The body of a create or an edit from the form's fields (strings as typed):
 * an empty field is no limit. expires is a datetime-local value, read as UTC.
 * Returns {body} or {error} with a sentence to show.
 */
export function keyOptionsBody(form, { edit = false } = {}) {
  const body = {}
  if (form.name !== undefined) body.name = form.name.trim()
  const limits = {}
  for (const [field, label] of [['perSecond', 'Calls a second'], ['burst', 'Burst'], ['creditsPerDay', 'Credits a day']]) {
    const v = String(form[field] ?? '').trim()
    if (v === '') continue
    if (!/^\d+$/.test(v) || Number(v) < 1) return { error: `${label} must be a whole number of at least 1, or empty for no limit.` }
    limits[field] = Number(v)
  }
  if (limits.burst && !limits.perSecond) return { error: 'A burst needs calls a second too.' }
  if (Object.keys(limits).length || edit) body.limits = limits
  const scopes = String(form.scopes ?? '').split(/[\s,]+/).filter(Boolean)
  if (scopes.length || edit) body.scopes = scopes
  const exp = String(form.expires ?? '').trim()
  if (exp) body.expiresAt = new Date(exp.length === 16 ? `${exp}:00Z` : exp).toISOString().replace('.000Z', 'Z')
  else if (edit) body.expiresAt = null
  return { body }
}

/** The form's fields for an existing key (for editing). */
export function keyForm(key) {
  return {
    name: key.name,
    perSecond: key.limits?.perSecond ?? '',
    burst: key.limits?.burst ?? '',
    creditsPerDay: key.limits?.creditsPerDay ?? '',
    scopes: (key.scopes || []).join(', '),
    expires: key.expiresAt ? key.expiresAt.slice(0, 16) : '',
  }
}
