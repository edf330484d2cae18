// Formatting of what the app shows: credits, money, dates, grants, ledger
// entries and subscription status, in plain words.

const DEFAULT_LOCALE = 'en-GB'

/** "1 credit", "1,000 credits". */
export function formatCredits(n, locale = DEFAULT_LOCALE) {
  const v = Number.isFinite(n) ? n : 0
  return `${v.toLocaleString(locale)} ${Math.abs(v) === 1 ? 'credit' : 'credits'}`
}

/** Minor units to money: (500, 'gbp') -> "£5.00". */
export function formatMoney(amount, currency, locale = DEFAULT_LOCALE) {
  const cur = String(currency || '').toUpperCase()
  try {
    return new Intl.NumberFormat(locale, { style: 'currency', currency: cur }).format(amount / 100)
  } catch {
    return `${(amount / 100).toFixed(2)} ${cur}`.trim()
  }
}

function toDate(value) {
  if (value === null || value === undefined || value === '') return null
  const d = value instanceof Date ? value : new Date(value)
  return Number.isNaN(d.getTime()) ? null : d
}

/** "3 Dec 2026", or '' for no date. */
export function formatDate(value, { locale = DEFAULT_LOCALE, timeZone } = {}) {
  const d = toDate(value)
  if (!d) return ''
  return new Intl.DateTimeFormat(locale, { day: 'numeric', month: 'short', year: 'numeric', timeZone }).format(d)
}

/** "3 Dec 2026, 14:05", or '' for no date. */
export function formatDateTime(value, { locale = DEFAULT_LOCALE, timeZone } = {}) {
  const d = toDate(value)
  if (!d) return ''
  return new Intl.DateTimeFormat(locale, {
    day: 'numeric', month: 'short', year: 'numeric', hour: '2-digit', minute: '2-digit', timeZone,
  }).format(d)
}

/** "in 3 days", "2 hours ago", "just now". */
export function formatRelative(value, now = new Date(), locale = DEFAULT_LOCALE) {
  const d = toDate(value)
  if (!d) return ''
  const diff = d.getTime() - toDate(now).getTime()
  const abs = Math.abs(diff)
  if (abs < 60_000) return 'just now'
  const rtf = new Intl.RelativeTimeFormat(locale, { numeric: 'auto' })
  const units = [
    ['day', 86_400_000],
    ['hour', 3_600_000],
    ['minute', 60_000],
  ]
  for (const [unit, ms] of units) {
    if (abs >= ms) return rtf.format(Math.round(diff / ms), unit)
  }
  return 'just now'
}

const sourceNames = {
  free: 'Free weekly allowance',
  subscription: 'Subscription',
  'top-up': 'One-off purchase',
  topup: 'One-off purchase',
  instant: 'One-off purchase',
  adjustment: 'Adjustment',
}

/** A grant source in words: 'free' -> "Free weekly allowance". */
export function sourceName(source) {
  if (!source) return 'Credits'
  return sourceNames[String(source).toLowerCase()] || String(source).replace(/[-_]/g, ' ').replace(/^./, (c) => c.toUpperCase())
}

/** One grant, e.g. {title: "Free weekly allowance", amount: "50 credits", expiry: "expire on 3 Dec 2026"}. */
export function describeGrant(grant, opts = {}) {
  const expires = toDate(grant?.expiresAt)
  return {
    title: sourceName(grant?.source),
    amount: formatCredits(grant?.remaining ?? 0),
    expiry: expires ? `expire on ${formatDate(expires, opts)}` : 'never expire',
  }
}

/** Grants soonest-expiring first (the order credits are spent in); never-expiring last. */
export function sortGrants(grants = []) {
  const key = (g) => toDate(g?.expiresAt)?.getTime() ?? Number.POSITIVE_INFINITY
  return [...grants].sort((a, b) => key(a) - key(b))
}

const statusWords = {
  active: 'Active',
  trialing: 'Trial',
  past_due: 'Payment overdue',
  unpaid: 'Unpaid',
  canceled: 'Cancelled',
  cancelled: 'Cancelled',
  incomplete: 'Awaiting payment',
  incomplete_expired: 'Payment expired',
  paused: 'Paused',
}

/**
 * The subscription in words: {label, detail, tone}. tone is 'ok', 'warn' or
 * 'bad', for colour; the words carry the meaning on their own.
 */
export function describeSubscription(sub, opts = {}) {
  if (!sub) return { label: 'No subscription', detail: '', tone: 'ok' }
  const end = formatDate(sub.currentPeriodEnd, opts)
  const status = String(sub.status || '').toLowerCase()
  const label = statusWords[status] || status.replace(/_/g, ' ') || 'Unknown'
  if (status === 'past_due' || status === 'unpaid') {
    return {
      label,
      detail: `The last payment for ${sub.plan} failed. Update your card in Manage billing to keep your plan.`,
      tone: 'bad',
    }
  }
  if (sub.cancelAtPeriodEnd) {
    return {
      label: 'Cancelling',
      detail: end ? `${sub.plan} ends on ${end} and will not renew.` : `${sub.plan} will not renew.`,
      tone: 'warn',
    }
  }
  if (status === 'active' || status === 'trialing') {
    return { label, detail: end ? `${sub.plan} renews on ${end}.` : '', tone: 'ok' }
  }
  return { label, detail: end ? `Current period ends on ${end}.` : '', tone: 'warn' }
}

/**
 * A ledger entry in plain words: {when, text, sign}. The server's entries are
 * {id, kind: grant|expiry|clawback|debt|debt_paid|note, source, credits (signed), grantId, at,
 * expiresAt, note}; older or other shapes (amount, type, createdAt, reason)
 * are read too.
 */
export function describeLedgerEntry(entry, opts = {}) {
  const kind = String(entry?.kind || entry?.type || '').toLowerCase()
  const raw = Number(entry?.credits ?? entry?.amount ?? 0)
  const credits = formatCredits(Math.abs(raw))
  const src = sourceName(entry?.source)
  const from = entry?.plan ? `${entry.plan} ${src.toLowerCase()}` : src.toLowerCase()
  const when = formatDate(entry?.at || entry?.createdAt || entry?.time, opts)
  const note = String(entry?.note || '').trim()
  let text
  let extra = note
  switch (kind) {
    case 'grant':
      // The server's note already says what the grant is and until when.
      if (note) {
        text = `Received ${credits}: ${note}`
        extra = ''
      } else {
        text = `Received ${credits} (${from})`
        if (entry?.expiresAt) text += `, expiring ${formatDate(entry.expiresAt, opts)}`
      }
      break
    case 'expiry':
    case 'expire':
    case 'expired':
      text = `${credits} expired unused (${from})`
      if (/expired/i.test(note)) extra = ''
      break
    case 'clawback':
    case 'refund':
    case 'dispute': {
      // "Taken back: payment refunded" -> "payment refunded"
      let reason = note.replace(/^taken back:\s*/i, '')
      if (!reason) reason = kind === 'dispute' || String(entry?.reason).toLowerCase() === 'dispute' ? 'payment disputed' : 'payment refunded'
      text = `${credits} taken back (${from}): ${reason}`
      extra = ''
      break
    }
    case 'debt':
      // "Owed: 990 credits already spent. Taken back: payment refunded"
      text = `${credits} owed (${from}): spent before the payment was taken back`
      extra = note.replace(/^owed:[^.]*\.\s*/i, '')
      break
    case 'debt_paid':
      text = `${credits} paid towards debt (${from})`
      extra = ''
      break
    case 'note':
      text = note || 'Note'
      extra = ''
      break
    case 'notice':
      // "Email sent: Your credits are running low: 9 left"
      text = note || 'Email sent'
      extra = ''
      break
    case 'debit':
    case 'usage':
      text = `Used ${credits}`
      break
    case 'adjustment':
      text = `${raw < 0 ? 'Removed' : 'Added'} ${credits} (adjustment)`
      break
    default:
      text = `${kind ? kind.replace(/_/g, ' ') : 'Change'}: ${raw < 0 ? '-' : ''}${credits}`
  }
  if (extra) text += ` — ${extra}`
  const negative = raw < 0 || ['expiry', 'expire', 'expired', 'clawback', 'refund', 'dispute', 'debit', 'usage', 'debt', 'debt_paid'].includes(kind)
  return { when, text, sign: negative ? '-' : '+' }
}

/** A key's prefix as shown in lists: "pm_abc123…". */
export function keyLabel(prefix) {
  return prefix ? `${prefix}…` : '(no prefix)'
}
