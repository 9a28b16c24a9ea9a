// Driving the example chat in headless Chromium (playwright-core): the launch, and the page actions
// and reads that the browser tests share. Not a test file of its own.
import { existsSync } from 'node:fs'
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core'
import t, { type Test } from 'tap'
import { sleep } from './helpers.js'

const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const chromiumArgs = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']

// Generous for a loaded machine, yet far below the 40 s a poll waits: a message that shows up in
// time was pushed by a publish, not picked up by the next poll.
export const deadline = 5000
// A server that is back is found by the client's backoff (at most 10 s between tries).
export const reconnectDeadline = 30_000

const installHint = 'apt-get install -y chromium (Debian, as root), or set CHROMIUM_PATH'

/**
 * Chromium, launched, and closed when the test file ends; undefined (with the file planned as
 * skipped) where there is none, unless COMET_BROWSER_TEST=required (as in .ci/run).
 */
export async function launchChromium (): Promise<Browser | undefined> {
  if (!existsSync(chromiumPath)) {
    if (process.env.COMET_BROWSER_TEST === 'required') {
      throw new Error(`COMET_BROWSER_TEST=required, but there is no Chromium at ${chromiumPath}: ${installHint}`)
    }
    t.plan(0, `no Chromium at ${chromiumPath}; to run the browser test, install it: ${installHint}`)
    return undefined
  }
  const browser = await chromium.launch({ executablePath: chromiumPath, args: chromiumArgs })
  t.teardown(() => browser.close())
  return browser
}

/** A page of its own (a browser context: its own network, for setOffline) in `room`, connected. */
export async function openChat (t: Test, browser: Browser, origin: string, room: string, name: string): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 640, height: 400 } })
  t.teardown(() => context.close())
  return await openChatIn(t, context, origin, room, name)
}

/** A tab of `context` in `room`, connected: tabs of one context share the client's long-poll. */
export async function openChatIn (t: Test, context: BrowserContext, origin: string, room: string, name: string): Promise<Page> {
  const page = await context.newPage()
  page.on('pageerror', error => { t.fail(`uncaught error in ${name}'s page: ${error.message}`) })
  // The page sorts and deduplicates what it shows, so a repeat would not be seen; it says so instead.
  page.on('console', message => {
    if (/delivered twice/.test(message.text())) t.fail(`${name}'s page: ${message.text()}`)
  })
  await page.goto(`${origin}/#${room}`)
  await page.fill('#name', name)
  if (await waitForState(page, 'connected', deadline) !== 'connected') throw new Error(`${name}'s page did not connect`)
  return page
}

export async function send (page: Page, text: string): Promise<void> {
  await page.fill('#text', text)
  await page.press('#text', 'Enter')
}

/** The texts of the messages shown, once they are `expected` or the deadline has passed. */
export async function messagesOf (page: Page, expected: string[], timeoutMs = deadline): Promise<string[]> {
  return await waitFor(() => page.locator('#messages .text').allTextContents(), texts => JSON.stringify(texts) === JSON.stringify(expected), timeoutMs)
}

export async function namesOf (page: Page): Promise<string[]> {
  return await page.locator('#messages .name').allTextContents()
}

export async function stateOf (page: Page): Promise<string | null> {
  return await page.locator('#status').getAttribute('data-state')
}

/** The state shown, once it is `state` or the deadline has passed. */
export async function waitForState (page: Page, state: string, timeoutMs: number): Promise<string | null> {
  return await waitFor(() => stateOf(page), shown => shown === state, timeoutMs)
}

// Returns the last value read rather than throwing, so that the assertion shows what was there.
export async function waitFor<T> (read: () => Promise<T>, done: (value: T) => boolean, timeoutMs: number): Promise<T> {
  const giveUp = Date.now() + timeoutMs
  for (;;) {
    const value = await read()
    if (done(value) || Date.now() > giveUp) return value
    await sleep(20)
  }
}
