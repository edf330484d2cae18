import { describe, expect, it } from 'vitest'
import {
  describeGrant,
  describeLedgerEntry,
  describeSubscription,
  formatCredits,
  formatDate,
  formatMoney,
  formatRelative,
  keyLabel,
  sortGrants,
  sourceName,
} from './format.js'

const utc = { timeZone: 'UTC' }

describe('formatCredits', () => {
  it.each([
    [0, '0 credits'],
    [1, '1 credit'],
    [50, '50 credits'],
    [100000, '100,000 credits'],
    [undefined, '0 credits'],
  ])('%s', (n, want) => expect(formatCredits(n)).toBe(want))
})

describe('formatMoney', () => {
  it.each([
    [500, 'gbp', '£5.00'],
    [5000, 'gbp', '£50.00'],
    [199, 'usd', 'US$1.99'],
    [100, 'xx', '1.00 XX'],
  ])('%i %s', (a, c, want) => expect(formatMoney(a, c)).toBe(want))
})

describe('dates', () => {
  it('formats RFC 3339 times', () => {
    expect(formatDate('2026-12-03T10:00:00Z', utc)).toBe('3 Dec 2026')
    expect(formatDate('', utc)).toBe('')
    expect(formatDate('not a date', utc)).toBe('')
  })
  it.each([
    ['2026-11-26T12:00:30Z', 'just now'],
    ['2026-11-29T12:00:00Z', 'in 3 days'],
    ['2026-11-26T10:00:00Z', '2 hours ago'],
    ['2026-11-27T12:00:00Z', 'tomorrow'],
    ['2026-11-26T12:05:00Z', 'in 5 minutes'],
  ])('relative %s', (v, want) => expect(formatRelative(v, new Date('2026-11-26T12:00:00Z'))).toBe(want))
})

describe('grants', () => {
  it('describes each source in words, with its expiry', () => {
    expect(describeGrant({ source: 'free', remaining: 50, expiresAt: '2026-12-03T00:00:00Z' }, utc)).toEqual({
      title: 'Free weekly allowance',
      amount: '50 credits',
      expiry: 'expire on 3 Dec 2026',
    })
    expect(describeGrant({ source: 'top-up', remaining: 1000, expiresAt: null }, utc)).toEqual({
      title: 'One-off purchase',
      amount: '1,000 credits',
      expiry: 'never expire',
    })
    expect(sourceName('promo_code')).toBe('Promo code')
  })
  it('sorts by expiry, never-expiring last', () => {
    const g = sortGrants([
      { source: 'top-up', expiresAt: null },
      { source: 'subscription', expiresAt: '2026-12-26T00:00:00Z' },
      { source: 'free', expiresAt: '2026-12-03T00:00:00Z' },
    ])
    expect(g.map((x) => x.source)).toEqual(['free', 'subscription', 'top-up'])
  })
})

describe('describeSubscription', () => {
  const base = { plan: 'Basic', status: 'active', currentPeriodEnd: '2026-12-26T00:00:00Z', cancelAtPeriodEnd: false }
  it.each([
    [null, 'No subscription', '', 'ok'],
    [base, 'Active', 'Basic renews on 26 Dec 2026.', 'ok'],
    [{ ...base, cancelAtPeriodEnd: true }, 'Cancelling', 'Basic ends on 26 Dec 2026 and will not renew.', 'warn'],
    [
      { ...base, status: 'past_due' },
      'Payment overdue',
      'The last payment for Basic failed. Update your card in Manage billing to keep your plan.',
      'bad',
    ],
    [{ ...base, status: 'canceled' }, 'Cancelled', 'Current period ends on 26 Dec 2026.', 'warn'],
  ])('%o', (sub, label, detail, tone) => {
    expect(describeSubscription(sub, utc)).toEqual({ label, detail, tone })
  })
})

describe('describeLedgerEntry', () => {
  const at = '2026-11-26T00:00:00Z'
  it.each([
    [{ kind: 'grant', source: 'free', credits: 50, at, expiresAt: '2026-12-03T00:00:00Z', note: '' }, '+', 'Received 50 credits (free weekly allowance), expiring 3 Dec 2026'],
    [{ kind: 'grant', source: 'subscription', credits: 1000, at, expiresAt: '2026-12-26T00:00:00Z', note: 'Basic subscription credits until 26 Dec 2026' }, '+', 'Received 1,000 credits: Basic subscription credits until 26 Dec 2026'],
    [{ kind: 'grant', source: 'topup', credits: 1000, at }, '+', 'Received 1,000 credits (one-off purchase)'],
    [{ kind: 'expiry', source: 'free', credits: -12, at, note: 'Free credits expired' }, '-', '12 credits expired unused (free weekly allowance)'],
    [{ kind: 'clawback', source: 'topup', credits: -1000, at, note: 'Taken back: payment refunded' }, '-', '1,000 credits taken back (one-off purchase): payment refunded'],
    [{ kind: 'clawback', source: 'subscription', credits: -900, at, note: 'Taken back: payment disputed' }, '-', '900 credits taken back (subscription): payment disputed'],
    [{ kind: 'clawback', source: 'topup', credits: -500, at, note: 'Taken back: 50% of the payment refunded' }, '-', '500 credits taken back (one-off purchase): 50% of the payment refunded'],
    [{ kind: 'clawback', reason: 'dispute', source: 'topup', amount: -5, at }, '-', '5 credits taken back (one-off purchase): payment disputed'],
    [{ type: 'refund', source: 'top-up', amount: -7, createdAt: at }, '-', '7 credits taken back (one-off purchase): payment refunded'],
    [{ kind: 'grant', source: 'subscription', plan: 'Basic', amount: 1000, at }, '+', 'Received 1,000 credits (Basic subscription)'],
    [{ kind: 'adjustment', credits: 7, at, note: 'goodwill' }, '+', 'Added 7 credits (adjustment) — goodwill'],
    [{ kind: 'debt', source: 'topup', credits: -990, at, note: 'Owed: 990 credits already spent. Taken back: payment refunded' }, '-', '990 credits owed (one-off purchase): spent before the payment was taken back — Taken back: payment refunded'],
    [{ kind: 'debt_paid', source: 'free', credits: -50, at, note: 'Free credits paid towards debt' }, '-', '50 credits paid towards debt (free weekly allowance)'],
    [{ kind: 'note', credits: 0, at, note: 'Payment failed: Basic credits bought once not granted' }, '+', 'Payment failed: Basic credits bought once not granted'],
    [{ kind: 'mystery_move', credits: -3, at }, '-', 'mystery move: -3 credits'],
    [{ kind: 'notice', credits: 0, at, note: 'Email sent: You have run out of credits' }, '+', 'Email sent: You have run out of credits'],
  ])('%o', (entry, sign, text) => {
    const d = describeLedgerEntry(entry, utc)
    expect(d.text).toBe(text)
    expect(d.sign).toBe(sign)
    expect(d.when).toBe('26 Nov 2026')
  })
})

it('keyLabel', () => {
  expect(keyLabel('pm_ab12')).toBe('pm_ab12…')
  expect(keyLabel('')).toBe('(no prefix)')
})
