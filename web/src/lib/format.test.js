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
  it.each([
    [{ kind: 'grant', source: 'free', amount: 50, at: '2026-11-26T00:00:00Z' }, '+', 'Received 50 credits (free weekly allowance)'],
    [{ kind: 'grant', source: 'subscription', plan: 'Basic', amount: 1000, at: '2026-11-26T00:00:00Z' }, '+', 'Received 1,000 credits (Basic subscription)'],
    [{ kind: 'expiry', source: 'free', amount: -12, at: '2026-11-26T00:00:00Z' }, '-', '12 credits expired (free weekly allowance)'],
    [{ type: 'refund', source: 'top-up', amount: -1000, createdAt: '2026-11-26T00:00:00Z' }, '-', '1,000 credits taken back after a refund (one-off purchase)'],
    [{ kind: 'clawback', reason: 'dispute', source: 'subscription', plan: 'Power', amount: -900, at: '2026-11-26T00:00:00Z' }, '-', '900 credits taken back after a payment dispute (Power subscription)'],
    [{ kind: 'clawback', source: 'top-up', amount: -1000, at: '2026-11-26T00:00:00Z' }, '-', '1,000 credits taken back after a refund (one-off purchase)'],
    [{ kind: 'dispute', source: 'top-up', amount: -5, at: '2026-11-26T00:00:00Z' }, '-', '5 credits taken back after a payment dispute (one-off purchase)'],
    [{ kind: 'adjustment', amount: 7, at: '2026-11-26T00:00:00Z', note: 'goodwill' }, '+', 'Added 7 credits (adjustment) — goodwill'],
    [{ kind: 'mystery_move', amount: -3, at: '2026-11-26T00:00:00Z' }, '-', 'mystery move: -3 credits'],
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
