#!/usr/bin/env node
// The web app's end-to-end journey, in Debian's chromium driven by playwright-core:
// sign up, see 50 credits, create a key, call the playground until 402,
// subscribe to Basic through the stand-in's checkout page, see plan and credits
// change, open billing, cancel back to Free, revoke the key and see the
// playground refuse it. With E2E_MAILPIT_URL (the local mail server of the
// dev server), after spending it reads the low-balance and exhausted emails
// in Mailpit's web view and sees the ledger say they went out. A screenshot
// of each state goes to E2E_SCREENSHOTS (default web/e2e/screenshots).
//
// Env: E2E_BASE_URL (required: the origin serving the app and /api),
//      E2E_MAILPIT_URL (optional: Mailpit's web view and API),
//      CHROMIUM (default /usr/bin/chromium), E2E_SCREENSHOTS, E2E_HEADFUL=1.
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium } from 'playwright-core'

const here = path.dirname(fileURLToPath(import.meta.url))
const base = (process.env.E2E_BASE_URL || '').replace(/\/+$/, '')
if (!base) {
  console.error('journey: set E2E_BASE_URL to the origin that serves the app (e.g. the line "Paymeter running at ..." of make dev)')
  process.exit(2)
}
const shots = path.resolve(process.env.E2E_SCREENSHOTS || path.join(here, 'screenshots'))
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium'
const T = Number(process.env.E2E_STEP_TIMEOUT_MS || 20_000)
const mailpit = (process.env.E2E_MAILPIT_URL || '').replace(/\/+$/, '')

const started = Date.now()
const steps = []
let shotN = 0
const consoleErrors = []
// Chromium logs every non-2xx fetch as a console error; these are the ones the
// journey provokes on purpose: the playground's 402 and 401, the wrong password's
// 400, the 404 of GET /api/ledger while the server does not offer it, and a
// missing favicon on the Stripe stand-in's pages.
const expectedNoise = [
  [/status of 40[12] /, /\/api\/meter$/],
  [/status of 429 /, /\/api\/meter$/], // the limited key's refusals
  [/status of 400 /, /accounts:signInWithPassword/],
  [/status of 404 /, /\/api\/ledger$/],
  [/status of 404 /, /\/favicon\.ico$/], // the stand-in's own pages have none
]
const isExpected = (text, url) => expectedNoise.some(([t, u]) => t.test(text) && u.test(url || ''))

function expect(cond, what) {
  if (!cond) throw new Error(`expected ${what}`)
}

async function main() {
  await mkdir(shots, { recursive: true })
  for (const f of await readdir(shots)) if (f.endsWith('.png')) await rm(path.join(shots, f))
  const profile = await mkdtemp(path.join(os.tmpdir(), 'paymeter-e2e-'))
  // A fresh profile each run; playwright passes it as --user-data-dir.
  const context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: process.env.E2E_HEADFUL !== '1',
    viewport: { width: 1100, height: 900 },
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run', '--disable-quic',
    ],
  })
  context.setDefaultTimeout(T)
  const page = await context.newPage()
  page.on('console', (m) => {
    if (m.type() === 'error' && !isExpected(m.text(), m.location()?.url)) consoleErrors.push(`${page.url()}: ${m.text()} (${m.location()?.url})`)
  })
  page.on('pageerror', (e) => consoleErrors.push(`${page.url()}: uncaught ${e.message}`))

  async function step(name, fn) {
    const t0 = Date.now()
    try {
      await fn()
    } catch (err) {
      const file = path.join(shots, `FAILED-${name.replace(/\W+/g, '-')}.png`)
      await page.screenshot({ path: file, fullPage: true }).catch(() => {})
      console.error(`✗ ${name} (${Date.now() - t0} ms): ${err.message}\n  at ${page.url()}\n  screenshot: ${file}`)
      throw err
    }
    steps.push([name, Date.now() - t0])
    console.log(`✓ ${name} (${Date.now() - t0} ms)`)
  }
  async function shot(label) {
    shotN++
    await page.screenshot({ path: path.join(shots, `${String(shotN).padStart(2, '0')}-${label}.png`), fullPage: true })
  }
  // Every visible control has a name a screen reader can say, and can take focus.
  async function checkControls(where) {
    const bad = await page.evaluate(() => {
      const out = []
      for (const el of document.querySelectorAll('#app input, #app button, #app a, #app select, #app textarea')) {
        if (!el.offsetParent) continue
        const name = (el.getAttribute('aria-label') || el.labels?.[0]?.innerText || el.innerText || el.title || '').trim()
        if (!name) out.push(el.outerHTML.slice(0, 80))
        if (el.tabIndex < 0) out.push(`not focusable: ${el.outerHTML.slice(0, 80)}`)
      }
      return out
    })
    expect(bad.length === 0, `every control on ${where} labelled and focusable:\n  ${bad.join('\n  ')}`)
  }
  const nav = (name) => page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name, exact: true }).click()
  const creditsText = () => page.getByTestId('credits-total').innerText()

  const email = `e2e-${Date.now()}-${Math.floor(Math.random() * 1e6)}@example.com`
  const password = 'correct horse battery'
  let secret = ''
  let spent = 0

  try {
    await step('sign up', async () => {
      await page.goto(`${base}/signup`)
      await page.getByRole('heading', { level: 1, name: 'Create an account' }).waitFor()
      await shot('sign-up')
      await checkControls('sign up')
      await page.getByLabel('Email').fill(email)
      await page.getByLabel('Password').fill(password)
      await page.getByRole('button', { name: 'Create account' }).click()
      await page.waitForURL(`${base}/dashboard`)
    })

    await step('see 50 credits', async () => {
      await page.getByTestId('credits-total').filter({ hasText: '50 credits' }).waitFor()
      expect((await page.getByTestId('plan-name').innerText()) === 'Free', 'plan Free')
      await page.getByRole('heading', { name: 'Please verify your email' }).waitFor()
      await page.locator('figure.chart svg').waitFor()
      await shot('dashboard-new-user')
      await checkControls('the dashboard')
    })

    await step('create a key', async () => {
      await nav('API keys')
      await page.getByLabel('Key name').fill('e2e-journey')
      await page.getByRole('button', { name: 'Create key' }).click()
      const box = page.getByTestId('secret')
      await box.waitFor()
      secret = await box.inputValue()
      expect(secret.length >= 16, 'a secret key to be shown')
      await page.getByText('this is the only time it is shown').waitFor()
      await page.getByRole('cell', { name: 'e2e-journey', exact: true }).waitFor()
      await shot('key-created')
      await checkControls('API keys')
    })

    await step('call the playground until 402', async () => {
      await nav('Playground')
      await page.getByLabel('API key').fill(secret)
      const result = page.getByTestId('pg-result')
      const button = page.getByRole('button', { name: 'Call POST /api/meter' })
      for (let i = 0; i < 200; i++) {
        await button.click()
        await page.waitForFunction((n) => document.body.innerText.includes(`Calls made here: ${n}`), i + 1)
        const status = await result.getAttribute('data-status')
        if (status === '402') break
        expect(status === '200', `200 or 402, got ${status}: ${await result.innerText()}`)
        spent++
        if (spent === 1) await shot('playground-ok')
      }
      expect((await result.getAttribute('data-status')) === '402', 'a 402 after spending every credit')
      expect(spent === 50, `50 successful calls before the 402, got ${spent}`)
      await result.getByText('insufficient_credits').waitFor()
      await page.getByRole('link', { name: /pricing page/ }).waitFor()
      await shot('playground-402')
      await checkControls('the playground')
    })

    await step('set the low-balance threshold in the notification settings', async () => {
      await nav('Dashboard')
      const card = page.getByTestId('notifications')
      await card.getByText('Emails about money').waitFor()
      expect((await card.getByTestId('notify-threshold').getAttribute('placeholder')) === 'default: 10', 'the default threshold, 20% of Free')
      await card.getByLabel('Low-balance threshold (credits)').fill('15')
      await card.getByRole('button', { name: 'Save notification settings' }).click()
      await card.getByTestId('notify-saved').waitFor()
      await card.getByText('Now: 15 credits.').waitFor()
      await card.getByLabel('Low-balance threshold (credits)').fill('')
      await card.getByRole('button', { name: 'Save notification settings' }).click()
      await card.getByText('Now: 10 credits.').waitFor()
      await checkControls('the dashboard with notification settings')
    })

    if (mailpit) {
      await step('read the low-balance and exhausted emails in Mailpit', async () => {
        // The notices are delivered by tasks a moment after the calls.
        let mine = []
        for (let i = 0; i < 100 && mine.length < 2; i++) {
          const list = await (await fetch(`${mailpit}/api/v1/messages?limit=200`)).json()
          mine = list.messages.filter((m) => m.To.some((t) => t.Address === email))
          if (mine.length < 2) await new Promise((r) => setTimeout(r, 200))
        }
        const subjects = mine.map((m) => m.Subject).sort()
        // The figure is the balance where the crossing was recorded: 9 when
        // the call that crossed the threshold of 10 saw it, lower when the
        // instance's lease boundaries left it to the lease's settlement.
        const low = /^Your credits are running low: ([0-9]) left$/.exec(subjects[1] || '')
        expect(subjects.length === 2 && low && subjects[0] === 'You have run out of credits',
          `one low-balance email (below 10) and one exhausted email, got ${JSON.stringify(subjects)}`)
        const lowSubject = low[0]
        await page.reload()
        await page.getByText('Email sent: You have run out of credits').waitFor()
        await page.getByText(`Email sent: ${lowSubject}`).waitFor()
        await shot('dashboard-notices-in-ledger')
        const mail = await context.newPage()
        try {
          await mail.goto(mailpit)
          await mail.getByText(lowSubject).first().click()
          await mail.frameLocator('iframe').first().getByText('below your alert threshold of 10').waitFor()
          await mail.screenshot({ path: path.join(shots, `${String(++shotN).padStart(2, '0')}-mailpit-low-balance.png`), fullPage: true })
          await mail.goto(mailpit)
          await mail.getByText('You have run out of credits').first().click()
          await mail.frameLocator('iframe').first().getByText('Calls are refused with 402').waitFor()
          await mail.screenshot({ path: path.join(shots, `${String(++shotN).padStart(2, '0')}-mailpit-exhausted.png`), fullPage: true })
        } finally {
          await mail.close()
        }
      })
    }

    await step('subscribe to Basic through checkout', async () => {
      await nav('Dashboard')
      await page.getByTestId('credits-total').filter({ hasText: /^0 credits$/ }).waitFor()
      // The chart counts the 50 calls just made on today's date, whatever the day of the month.
      await page.waitForFunction(() => {
        const bars = document.querySelectorAll('figure.chart rect.bar title')
        return bars.length > 0 && / 50 credits$/.test(bars[bars.length - 1].textContent)
      })
      await nav('Pricing')
      const basic = page.locator('[data-plan="Basic"]')
      await basic.getByRole('button', { name: /Subscribe monthly/ }).waitFor()
      await page.locator('[data-plan="Free"]').getByText('Current plan').waitFor()
      await shot('pricing-free')
      await checkControls('pricing')
      await basic.getByRole('button', { name: /Subscribe monthly/ }).click()
      await page.waitForURL(/\/dev\/checkout\//)
      await shot('stand-in-checkout')
      await page.getByRole('button', { name: /^Pay/ }).click()
      await page.waitForURL(/\/checkout\/success/)
      await shot('checkout-success-waiting')
      await page.getByTestId('checkout-done').waitFor({ timeout: 60_000 })
      await shot('checkout-success-done')
    })

    await step('see plan and credits change', async () => {
      await page.getByRole('link', { name: 'Go to the dashboard' }).click()
      await page.getByTestId('plan-name').filter({ hasText: /^Basic$/ }).waitFor()
      await page.getByTestId('credits-total').filter({ hasText: '1,000 credits' }).waitFor()
      await page.getByTestId('sub-status').filter({ hasText: 'Active' }).waitFor()
      await shot('dashboard-basic')
    })

    await step('call the sample upstream through the playground and see it by route', async () => {
      await nav('Playground')
      await page.getByLabel('API key').fill(secret)
      await page.getByLabel('Route').fill('/v1/stats')
      await page.getByLabel('Body').fill('One metered call. Through the meter!')
      await page.getByRole('button', { name: 'Call POST /v1/stats' }).click()
      const result = page.getByTestId('pg-result')
      await result.and(page.locator('[data-status="200"]')).waitFor()
      await page.getByTestId('pg-body').filter({ hasText: '"words":6' }).waitFor()
      await result.getByText('Cost 1 credit.').waitFor()
      await shot('playground-upstream')
      await nav('Dashboard')
      const routes = page.getByTestId('usage-routes')
      await routes.getByRole('row', { name: /\/v1\/ 1 credit/ }).waitFor()
      await routes.getByRole('row', { name: /\/api\/meter 50 credits/ }).waitFor()
    })

    await step('open billing, cancel at period end there, see it on the dashboard', async () => {
      await page.getByRole('button', { name: 'Manage billing' }).click()
      await page.waitForURL((u) => !u.href.startsWith(`${base}/dashboard`))
      await page.waitForLoadState('load')
      await shot('billing-portal')
      await page.getByRole('button', { name: /^Cancel at (the end of the )?period( end)?$/ }).click()
      await page.waitForLoadState('load')
      await page.getByRole('link', { name: 'Return to Paymeter' }).click()
      await page.waitForURL(`${base}/dashboard`)
      // The portal's change reaches the API by webhook: allow it a moment.
      for (let i = 0; i < 10; i++) {
        if ((await page.getByTestId('sub-status').filter({ hasText: 'Cancelling' }).count()) > 0) break
        await page.waitForTimeout(1000)
        await page.reload()
        await page.getByTestId('sub-status').waitFor()
      }
      await page.getByTestId('sub-status').filter({ hasText: 'Cancelling' }).waitFor({ timeout: 1000 })
      await page.getByText(/Basic ends on .* and will not renew/).waitFor()
      await shot('dashboard-cancelling')
    })

    await step('cancel back to Free', async () => {
      await nav('Pricing')
      await page.locator('[data-plan="Basic"]').getByText('Current plan').waitFor()
      await page.getByRole('button', { name: 'Switch to Free' }).click()
      await page.getByRole('button', { name: 'Keep my plan' }).and(page.locator(':focus')).waitFor()
      await page.getByRole('button', { name: 'Yes, switch to Free' }).click()
      await page.getByTestId('pricing-note').waitFor()
      await page.locator('[data-plan="Free"]').getByText('Current plan').waitFor()
      await shot('pricing-back-to-free')
      await nav('Dashboard')
      await page.getByTestId('plan-name').filter({ hasText: /^Free$/ }).waitFor()
      await page.getByTestId('sub-status').filter({ hasText: 'No subscription' }).waitFor()
      await shot('dashboard-free-again')
    })

    await step('a key limited to 1 call a second answers 429 in the playground; roll it with a grace', async () => {
      await nav('API keys')
      await page.getByLabel('Key name').fill('e2e-limited')
      await page.getByRole('button', { name: 'Limits, routes and expiry (optional)' }).click()
      await page.getByLabel('Calls a second').fill('1')
      await page.getByTestId('limits-preview').filter({ hasText: 'At most 1 call a second' }).waitFor()
      await page.getByRole('button', { name: 'Create key' }).click()
      const box = page.getByTestId('secret')
      await box.waitFor()
      const limited = await box.inputValue()
      await page.getByRole('cell', { name: /^At most 1 call a second/ }).waitFor()
      await shot('limited-key-created')
      await nav('Playground')
      await page.getByLabel('API key').fill(limited)
      const result = page.getByTestId('pg-result')
      const button = page.getByRole('button', { name: 'Call POST /api/meter' })
      let status = ''
      for (let i = 0; i < 10 && status !== '429'; i++) {
        await button.click()
        await page.waitForFunction((n) => document.body.innerText.includes(`Calls made here: ${n}`), i + 1)
        status = await result.getAttribute('data-status')
      }
      expect(status === '429', `a 429 when calling a 1/s key quickly, got ${status}`)
      await result.getByText('rate_limited').waitFor()
      await page.getByTestId('pg-retry').filter({ hasText: /try again in \d+ s/ }).waitFor()
      await shot('playground-429')
      await checkControls('the playground')

      await nav('API keys')
      await page.getByRole('button', { name: 'Roll key e2e-limited' }).click()
      await page.getByLabel('The old key stops working').selectOption({ label: 'in 1 minute' })
      await page.getByRole('button', { name: 'Roll key', exact: true }).click()
      await page.getByRole('cell', { name: /^Replaced: works until/ }).waitFor()
      const rolled = await page.getByTestId('secret').inputValue()
      expect(rolled !== limited && rolled.length >= 16, 'a new secret after the roll')
      await shot('key-rolled')
      // The dev clock moves past the grace: the old key answers 401, the new one does not.
      const moved = await page.evaluate(async () => (await fetch('/dev/clock/advance', { method: 'POST', body: '{"seconds":61}' })).status)
      expect(moved === 200, `the dev clock to move, got ${moved}`)
      await nav('Playground')
      await page.getByLabel('API key').fill(limited)
      await button.click()
      await result.getByText('invalid_api_key').waitFor()
      await result.getByText(/grace period ended/).waitFor()
      await page.getByLabel('API key').fill(rolled)
      await button.click()
      await result.getByText('invalid_api_key').waitFor({ state: 'detached' })
      await shot('rolled-old-key-refused')
    })

    await step('revoke the key and see the playground refuse it', async () => {
      await nav('API keys')
      // By keyboard: Enter on Revoke moves focus to "Keep it"; Shift+Tab, Enter confirms.
      await page.getByRole('button', { name: 'Revoke key e2e-journey' }).focus()
      await page.keyboard.press('Enter')
      await page.getByRole('button', { name: 'Keep it' }).and(page.locator(':focus')).waitFor()
      await shot('revoke-confirm')
      await page.keyboard.press('Shift+Tab')
      await page.getByRole('button', { name: 'Yes, revoke' }).and(page.locator(':focus')).waitFor()
      await page.keyboard.press('Enter')
      await page.getByText('was revoked').waitFor()
      await page.getByRole('cell', { name: 'e2e-journey', exact: true }).waitFor({ state: 'detached' })
      await nav('Playground')
      await page.getByLabel('API key').fill(secret)
      await page.getByRole('button', { name: 'Call POST /api/meter' }).click()
      const result = page.getByTestId('pg-result')
      await result.locator('[data-status="401"]').or(result.and(page.locator('[data-status="401"]'))).waitFor()
      await result.getByText('invalid_api_key').waitFor()
      await shot('playground-refused')
    })

    await step('phone width and sign out', async () => {
      await page.setViewportSize({ width: 390, height: 844 })
      await nav('Dashboard')
      await page.getByTestId('plan-name').waitFor()
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth)
      expect(overflow <= 0, `no sideways scrolling at 390px (overflow ${overflow}px)`)
      await shot('phone-dashboard')
      await page.getByRole('button', { name: 'Sign out' }).click()
      await page.waitForURL(`${base}/signin`)
      await shot('phone-signed-out')
    })

    await step('a wrong password is explained, and a reset link can be asked for', async () => {
      await page.setViewportSize({ width: 1100, height: 900 })
      await page.getByLabel('Email').fill(email)
      await page.getByLabel('Password').fill('not the password')
      await page.getByRole('button', { name: 'Sign in' }).click()
      await page.getByRole('alert').filter({ hasText: 'The email or password is wrong.' }).waitFor()
      await shot('sign-in-wrong-password')
      await page.getByRole('link', { name: 'Forgot your password?' }).click()
      await page.getByLabel('Email').fill(email)
      await page.getByRole('button', { name: 'Send reset link' }).click()
      await page.getByRole('status').filter({ hasText: 'a link to reset its password is on its way' }).waitFor()
      await shot('password-reset-sent')
      await page.getByRole('link', { name: 'Sign in' }).last().click()
      await page.waitForURL(`${base}/signin`)
    })

    await step('sign in with Google (Auth emulator)', async () => {
      await page.getByRole('button', { name: 'Continue with Google' }).click()
      await page.getByLabel('Google account email').fill(`google-${email}`)
      await shot('google-emulator-sign-in')
      await page.getByRole('button', { name: 'Continue with Google' }).click()
      await page.waitForURL(`${base}/dashboard`)
      await page.getByTestId('credits-total').filter({ hasText: '50 credits' }).waitFor()
      expect((await page.getByRole('heading', { name: 'Please verify your email' }).count()) === 0, 'no verification notice for a Google account')
      await page.getByText(`Signed in as google-${email}`).waitFor()
      await shot('google-dashboard')
    })

    expect(consoleErrors.length === 0, `no console errors, got:\n  ${consoleErrors.join('\n  ')}`)
  } finally {
    await context.close()
    await rm(profile, { recursive: true, force: true })
  }
}

main().then(
  () => {
    const s = ((Date.now() - started) / 1000).toFixed(1)
    console.log(`journey: ${steps.length} steps in ${s}s; screenshots in ${shots}`)
    console.log(`${steps.length} passed, 0 failed`)
  },
  (err) => {
    console.error(`journey failed: ${err.message}`)
    console.log(`${steps.length} passed, 1 failed`)
    process.exit(1)
  },
)
