import { describe, expect, it } from 'vitest'
import { chartBars, fillUsageDays, niceMax } from './usage.js'

describe('fillUsageDays', () => {
  const today = new Date('2026-11-26T23:30:00Z')
  it('fills missing days with zero, oldest first, ending today', () => {
    const s = fillUsageDays([{ date: '2026-11-26', credits: 17 }, { date: '2026-11-20', credits: 3 }], 30, today)
    expect(s).toHaveLength(30)
    expect(s[0]).toEqual({ date: '2026-10-28', credits: 0 })
    expect(s.at(-1)).toEqual({ date: '2026-11-26', credits: 17 })
    expect(s.find((d) => d.date === '2026-11-20').credits).toBe(3)
    expect(s.reduce((a, d) => a + d.credits, 0)).toBe(20)
  })
  it('drops days outside the window, adds duplicates, ignores junk', () => {
    const s = fillUsageDays(
      [
        { date: '2026-01-01', credits: 99 },
        { date: '2026-11-25', credits: 2 },
        { date: '2026-11-25', credits: 5 },
        { date: '2026-11-24', credits: 'x' },
        null,
        { credits: 4 },
      ],
      3,
      today,
    )
    expect(s).toEqual([
      { date: '2026-11-24', credits: 0 },
      { date: '2026-11-25', credits: 7 },
      { date: '2026-11-26', credits: 0 },
    ])
  })
  it('crosses month and year ends', () => {
    const s = fillUsageDays([], 3, new Date('2027-01-01T00:00:00Z'))
    expect(s.map((d) => d.date)).toEqual(['2026-12-30', '2026-12-31', '2027-01-01'])
  })
  it('treats no data as all zero', () => {
    expect(fillUsageDays(undefined, 2, today)).toEqual([
      { date: '2026-11-25', credits: 0 },
      { date: '2026-11-26', credits: 0 },
    ])
  })
})

describe('chart', () => {
  it.each([
    [0, 1],
    [1, 1],
    [7, 8],
    [17, 20],
    [230, 250],
    [1200, 1500],
    [100000, 100000],
  ])('niceMax(%i) = %i', (m, want) => expect(niceMax(m)).toBe(want))

  it('lays out bars scaled to the axis', () => {
    const { bars, max, total } = chartBars(
      [
        { date: 'a', credits: 0 },
        { date: 'b', credits: 10 },
        { date: 'c', credits: 20 },
        { date: 'd', credits: 5 },
      ],
      { width: 400, height: 100, gap: 0 },
    )
    expect(max).toBe(20)
    expect(total).toBe(35)
    expect(bars.map((b) => b.h)).toEqual([0, 50, 100, 25])
    expect(bars.map((b) => b.x)).toEqual([0, 100, 200, 300])
    expect(bars[2].y).toBe(0)
  })
  it('shows a tiny day as at least one unit tall', () => {
    const { bars } = chartBars([{ date: 'a', credits: 1 }, { date: 'b', credits: 100000 }], { height: 100 })
    expect(bars[0].h).toBe(1)
  })
})
