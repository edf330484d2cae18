// What happens around Stripe Checkout: remembering what the person bought
// before leaving the site, and telling on return whether the account shows it.

const KEY = 'paymeter.pendingCheckout'

/** The paths Stripe sends the browser back to (the server builds them from PUBLIC_URL). */
export const RETURN_PATHS = { success: '/checkout/success', cancel: '/checkout/cancel' }

/** Stores what is being bought, with the account as it was, so the return page knows what to wait for. */
export function savePending(storage, { plan, subscribe, user }, now = Date.now()) {
  const pending = {
    plan,
    subscribe: !!subscribe,
    planBefore: user?.plan ?? null,
    creditsBefore: user?.credits ?? 0,
    at: now,
  }
  try {
    storage?.setItem(KEY, JSON.stringify(pending))
  } catch {
    // storage may be unavailable (private mode): the return page then just shows the account
  }
  return pending
}

/** The pending checkout, or null when none or older than a day. */
export function readPending(storage, now = Date.now()) {
  try {
    const p = JSON.parse(storage?.getItem(KEY) || 'null')
    if (!p || typeof p.plan !== 'string' || now - p.at > 86_400_000) return null
    return p
  } catch {
    return null
  }
}

export function clearPending(storage) {
  try {
    storage?.removeItem(KEY)
  } catch {
    // nothing to clear
  }
}

/**
 * Whether the account now shows the purchase: a subscription is shown by the
 * plan and a live subscription for it; a one-off purchase by more credits than before.
 */
export function purchaseShown(pending, user, first = null) {
  if (!user) return false
  // Nothing remembered (another tab or host): wait for any change to the account.
  if (!pending) return !!first && accountChanged(first, user)
  if (pending.subscribe) {
    const sub = user.subscription
    return user.plan === pending.plan && !!sub && sub.plan === pending.plan && sub.status !== 'incomplete'
  }
  return (user.credits ?? 0) > (pending.creditsBefore ?? 0)
}

/**
 * pollUntil calls load() until done(value) is true or timeoutMs passes.
 * Resolves {value, done}; a load() failure is thrown only when it is the last word.
 */
export async function pollUntil(load, done, { intervalMs = 1000, timeoutMs = 30_000, sleep, now = () => Date.now(), onValue } = {}) {
  const wait = sleep || ((ms) => new Promise((r) => setTimeout(r, ms)))
  const start = now()
  let lastErr = null
  let value
  for (;;) {
    try {
      value = await load()
      lastErr = null
      onValue?.(value)
      if (done(value)) return { value, done: true }
    } catch (err) {
      lastErr = err
    }
    if (now() - start + intervalMs > timeoutMs) break
    await wait(intervalMs)
  }
  if (lastErr && value === undefined) throw lastErr
  return { value, done: false }
}

/** Whether plan, credits or subscription differ between two loads of the account. */
export function accountChanged(a, b) {
  const sub = (u) => JSON.stringify(u?.subscription ?? null)
  return a?.plan !== b?.plan || a?.credits !== b?.credits || sub(a) !== sub(b)
}
