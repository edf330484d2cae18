import { describe, expect, it } from 'vitest'
import { clearPending, pollUntil, purchaseShown, readPending, savePending } from './checkout.js'

function memoryStorage() {
  const m = new Map()
  return { getItem: (k) => m.get(k) ?? null, setItem: (k, v) => m.set(k, String(v)), removeItem: (k) => m.delete(k) }
}

describe('pending checkout', () => {
  it('round-trips and expires after a day', () => {
    const s = memoryStorage()
    savePending(s, { plan: 'Basic', subscribe: true, user: { plan: 'Free', credits: 3 } }, 1000)
    expect(readPending(s, 2000)).toEqual({ plan: 'Basic', subscribe: true, planBefore: 'Free', creditsBefore: 3, at: 1000 })
    expect(readPending(s, 1000 + 86_400_001)).toBeNull()
    clearPending(s)
    expect(readPending(s, 2000)).toBeNull()
  })
  it('survives broken storage', () => {
    const broken = { getItem: () => '{oops', setItem: () => { throw new Error('quota') }, removeItem: () => { throw new Error('x') } }
    expect(savePending(broken, { plan: 'Basic', subscribe: false }).plan).toBe('Basic')
    expect(readPending(broken)).toBeNull()
    expect(() => clearPending(broken)).not.toThrow()
  })
})

describe('purchaseShown', () => {
  const sub = { plan: 'Basic', subscribe: true, creditsBefore: 0 }
  const once = { plan: 'Basic', subscribe: false, creditsBefore: 10 }
  it.each([
    ['subscription not yet applied', sub, { plan: 'Free', credits: 0, subscription: null }, false],
    ['subscription incomplete', sub, { plan: 'Basic', credits: 0, subscription: { plan: 'Basic', status: 'incomplete' } }, false],
    ['subscription applied', sub, { plan: 'Basic', credits: 1000, subscription: { plan: 'Basic', status: 'active' } }, true],
    ['one-off not yet applied', once, { plan: 'Free', credits: 10 }, false],
    ['one-off applied', once, { plan: 'Free', credits: 1010 }, true],
    ['no account yet', sub, null, false],
  ])('%s', (_, pending, user, want) => expect(purchaseShown(pending, user)).toBe(want))

  it('with nothing remembered, waits for any change from the first load', () => {
    const first = { plan: 'Free', credits: 0, subscription: null }
    expect(purchaseShown(null, first, first)).toBe(false)
    expect(purchaseShown(null, { ...first }, null)).toBe(false)
    expect(purchaseShown(null, { ...first, credits: 1000 }, first)).toBe(true)
    expect(purchaseShown(null, { ...first, subscription: { plan: 'Basic', status: 'active' } }, first)).toBe(true)
  })
})

describe('pollUntil', () => {
  function clock() {
    let t = 0
    return { now: () => t, sleep: async (ms) => { t += ms } }
  }
  it('stops as soon as the change shows', async () => {
    const c = clock()
    const values = [1, 2, 3, 4]
    let calls = 0
    const r = await pollUntil(async () => (calls++, values.shift()), (v) => v === 3, { intervalMs: 1000, timeoutMs: 10_000, ...c })
    expect(r).toEqual({ value: 3, done: true })
    expect(calls).toBe(3)
  })
  it('gives up at the timeout with the last value', async () => {
    const c = clock()
    let calls = 0
    const r = await pollUntil(async () => ++calls, () => false, { intervalMs: 1000, timeoutMs: 5000, ...c })
    expect(r.done).toBe(false)
    expect(calls).toBe(6) // at 0s, 1s, ... 5s
    expect(r.value).toBe(6)
  })
  it('rides over a failure, and throws only when nothing ever loaded', async () => {
    const c = clock()
    let n = 0
    const r = await pollUntil(async () => { if (++n === 1) throw new Error('blip'); return n }, (v) => v === 2, { ...c })
    expect(r).toEqual({ value: 2, done: true })
    await expect(pollUntil(async () => { throw new Error('down') }, () => true, { timeoutMs: 3000, ...clock() })).rejects.toThrow('down')
  })
})
