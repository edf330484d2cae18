// The usage series behind the 30-day chart.

/** 'YYYY-MM-DD' of a date in UTC (the server's days are UTC dates). */
export function isoDay(d) {
  return d.toISOString().slice(0, 10)
}

/**
 * fillUsageDays returns exactly `count` days ending with `today` (UTC),
 * oldest first, each {date, credits}; a day the server left out counts 0,
 * days outside the window are dropped and duplicate days are added up.
 */
export function fillUsageDays(days = [], count = 30, today = new Date()) {
  const byDate = new Map()
  for (const d of days || []) {
    if (!d || typeof d.date !== 'string') continue
    const n = Number(d.credits)
    byDate.set(d.date, (byDate.get(d.date) || 0) + (Number.isFinite(n) ? n : 0))
  }
  const end = Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate())
  const out = []
  for (let i = count - 1; i >= 0; i--) {
    const date = isoDay(new Date(end - i * 86_400_000))
    out.push({ date, credits: byDate.get(date) || 0 })
  }
  return out
}

/** A round axis maximum at or above max: 0->1, 7->10, 17->20, 230->250, 1200->1500. */
export function niceMax(max) {
  if (!(max > 0)) return 1
  const mag = 10 ** Math.floor(Math.log10(max))
  for (const step of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) {
    if (step * mag >= max) return step * mag
  }
  return 10 * mag
}

/**
 * chartBars lays out one bar per day in a width x height box with room for
 * labels: returns {max, total, bars: [{x, y, w, h, date, credits}]}.
 */
export function chartBars(series, { width = 600, height = 160, gap = 2 } = {}) {
  const n = series.length || 1
  const max = niceMax(Math.max(0, ...series.map((d) => d.credits)))
  const slot = width / n
  const w = Math.max(1, slot - gap)
  const bars = series.map((d, i) => {
    const h = d.credits > 0 ? Math.max(1, (d.credits / max) * height) : 0
    return { x: i * slot + gap / 2, y: height - h, w, h, date: d.date, credits: d.credits }
  })
  return { max, total: series.reduce((s, d) => s + d.credits, 0), bars }
}
