// Many tabs of the example chat in one browser (one context, as one user's profile): they share
// one long-poll, led by one tab; when the leader closes, crashes or is frozen, another takes over
// and every tab still shows each message once, in order. Headless Chromium, as browser.test.ts.
// The times the issue aims at (Connected within 1 s, messages in every tab within 1 s) are measured
// and printed as comments; the assertions wait far longer, so that a loaded machine cannot fail them.
import type { Browser, BrowserContext, Page } from 'playwright-core'
import t, { type Test } from 'tap'
import { deadline, launchChromium, messagesOf, openChatIn, send, waitFor } from './chat-browser.js'
import { startExample } from './example-process.js'
import { sleep } from './helpers.js'

interface PageGlobals {
  navigator: { locks: { request: (name: string, callback: () => Promise<void>) => Promise<void>, query: () => Promise<{ held?: Array<{ name?: string, clientId?: string }> }> } }
}

async function closeTab (leader: Page): Promise<void> {
  await leader.close({ runBeforeUnload: false })
}

async function crashTab (leader: Page): Promise<void> {
  const crashed = new Promise(resolve => leader.once('crash', resolve))
  const session = await leader.context().newCDPSession(leader)
  // Answered by no one: the renderer is gone.
  session.send('Page.crash').catch(() => {})
  await crashed
  await leader.close()
}

const browser = await launchChromium()
if (browser !== undefined) await tabsTests(browser)

async function tabsTests (browser: Browser): Promise<void> {
  const { origin } = await startExample(t)

  async function pending (): Promise<number> {
    const stats = await (await fetch(`${origin}/stats`)).json() as { pending: number }
    return stats.pending
  }

  /** POST a message as the server's own route takes it (not through a page). */
  async function post (room: string, text: string): Promise<void> {
    const response = await fetch(`${origin}/rooms/${room}/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'Server', text })
    })
    if (response.status !== 201) throw new Error(`posting failed: ${response.status}`)
  }

  async function newContext (t: Test): Promise<BrowserContext> {
    const context = await browser.newContext({ viewport: { width: 640, height: 400 } })
    t.teardown(() => context.close())
    return context
  }

  /** Opens `rooms.length` tabs, the i-th in rooms[i]; prints how long each took to show Connected. */
  async function openTabs (t: Test, context: BrowserContext, rooms: string[]): Promise<Page[]> {
    const pages: Page[] = []
    const times: number[] = []
    for (const [i, room] of rooms.entries()) {
      const started = Date.now()
      pages.push(await openChatIn(t, context, origin, room, `Tab ${i + 1}`))
      times.push(Date.now() - started)
    }
    t.comment(`time to Connected per tab (ms, from opening): ${times.join(', ')}`)
    return pages
  }

  /** Waits until every page shows `expected`; resolves to how long the slowest took, in ms. */
  async function shownInAll (t: Test, pages: Page[], expected: string[], what: string): Promise<number> {
    const started = Date.now()
    const shown = await Promise.all(pages.map(page => messagesOf(page, expected)))
    const took = Date.now() - started
    shown.forEach((texts, i) => { t.same(texts, expected, `${what}: tab ${i + 1} shows every message once, in order`) })
    return took
  }

  async function onePoll (t: Test): Promise<void> {
    t.equal(await waitFor(pending, n => n === 1, deadline), 1, 'the server holds one poll for the whole browser')
  }

  t.test('ten tabs in one room: one poll, and a message from any tab shows in all of them', async t => {
    const context = await newContext(t)
    const pages = await openTabs(t, context, Array(10).fill('ten'))
    await onePoll(t)
    const expected: string[] = []
    const latencies: number[] = []
    for (const [page, text] of [[pages[0], 'from the first tab'], [pages[9], 'from the last tab'], [pages[4], 'from the fifth tab']] as const) {
      await send(page as Page, text)
      expected.push(text)
      latencies.push(await shownInAll(t, pages, expected, text))
    }
    // A tab opened later gets the room's history, and its own messages reach the others.
    const late = (await openTabs(t, context, ['ten']))[0] as Page
    t.same(await messagesOf(late, expected), expected, 'a tab opened later shows the messages sent before')
    await send(late, 'from a tab opened late')
    expected.push('from a tab opened late')
    latencies.push(await shownInAll(t, [...pages, late], expected, 'from a tab opened late'))
    t.comment(`message latency to every tab (ms, from Enter, read every 20 ms): ${latencies.join(', ')}`)
    await onePoll(t)
  })

  t.test('ten tabs over three rooms: one poll, and each message shows in its own room only', async t => {
    const context = await newContext(t)
    const rooms = Array.from({ length: 10 }, (_, i) => `spread${i % 3}`)
    const pages = await openTabs(t, context, rooms)
    await onePoll(t)
    const latencies: number[] = []
    for (const room of ['spread0', 'spread1', 'spread2']) {
      const sender = pages[rooms.indexOf(room)] as Page
      await send(sender, `hello ${room}`)
      latencies.push(await shownInAll(t, pages.filter((_, i) => rooms[i] === room), [`hello ${room}`], room))
    }
    t.comment(`message latency to the tabs of a room (ms): ${latencies.join(', ')}`)
    for (const [i, page] of pages.entries()) {
      t.same(await page.locator('#messages .text').allTextContents(), [`hello ${rooms[i] as string}`], `tab ${i + 1} shows its room's message only`)
    }
    await onePoll(t)
  })

  /**
   * The tab that leads: the holder of the client's lock. Each page takes a lock named after its
   * index, and the lock manager says which client holds which.
   */
  async function leaderOf (pages: Page[]): Promise<number> {
    for (const [i, page] of pages.entries()) {
      await page.evaluate(name => { void (globalThis as unknown as PageGlobals).navigator.locks.request(name, async () => { await new Promise(() => {}) }) }, `test tab ${i}`)
    }
    return await waitFor(async () => {
      const { held = [] } = await (pages[0] as Page).evaluate(() => (globalThis as unknown as PageGlobals).navigator.locks.query())
      const leader = held.find(lock => lock.name?.startsWith('fastify-comet ') === true && lock.name.includes(' tab ') === false)
      const tab = held.find(lock => lock.clientId === leader?.clientId && lock.name?.startsWith('test tab ') === true)
      return tab === undefined ? -1 : Number(tab.name?.slice('test tab '.length))
    }, index => index >= 0, deadline)
  }

  async function takeover (t: Test, room: string, end: (leader: Page) => Promise<void>): Promise<void> {
    const context = await newContext(t)
    const pages = await openTabs(t, context, Array(5).fill(room))
    await onePoll(t)
    const leader = await leaderOf(pages)
    t.ok(leader >= 0, `tab ${leader + 1} leads`)
    const expected: string[] = []
    // Messages keep coming, from the server, while the leader goes.
    let ended: Promise<void> | undefined
    for (let n = 1; n <= 30; n++) {
      await post(room, `message ${n}`)
      expected.push(`message ${n}`)
      if (n === 10) ended = end(pages[leader] as Page)
      await sleep(30)
    }
    await ended
    const others = pages.filter((_, i) => i !== leader)
    await shownInAll(t, others, expected, 'around the takeover')
    await onePoll(t)
    await context.close()
  }

  /** How long after the leader goes a message published at once shows in every other tab. */
  async function takeoverTime (t: Test, room: string, end: (leader: Page) => Promise<void>): Promise<void> {
    const context = await newContext(t)
    const pages = await openTabs(t, context, Array(5).fill(room))
    await onePoll(t)
    const leader = await leaderOf(pages)
    const started = Date.now()
    await end(pages[leader] as Page)
    await post(room, 'just after the leader went')
    await shownInAll(t, pages.filter((_, i) => i !== leader), ['just after the leader went'], 'just after the leader went')
    t.comment(`takeover: a message published as the leader went showed in every other tab ${Date.now() - started} ms after`)
    await onePoll(t)
    await context.close()
  }

  t.test('the leader tab closes while messages are sent: the others show each once, in order', async t => {
    await takeover(t, 'closing', closeTab)
    await takeoverTime(t, 'closing-time', closeTab)
  })

  t.test('the leader tab\'s renderer crashes while messages are sent: the others show each once, in order', async t => {
    await takeover(t, 'crashing', crashTab)
    await takeoverTime(t, 'crashing-time', crashTab)
  })

  t.test('the leader tab is frozen in the background: another takes over, and the frozen one catches up once thawed', async t => {
    const context = await newContext(t)
    const pages = await openTabs(t, context, Array(4).fill('frozen'))
    await onePoll(t)
    const leader = pages[await leaderOf(pages)] as Page
    const session = await context.newCDPSession(leader)
    const started = Date.now()
    await session.send('Page.setWebLifecycleState', { state: 'frozen' })
    const expected = ['while frozen 1']
    await post('frozen', 'while frozen 1')
    const others = pages.filter(page => page !== leader)
    await shownInAll(t, others, expected, 'while the leader is frozen')
    t.comment(`frozen leader: a message published as it froze showed in every other tab ${Date.now() - started} ms after`)
    await onePoll(t)
    await post('frozen', 'while frozen 2')
    expected.push('while frozen 2')
    await shownInAll(t, others, expected, 'while the leader is frozen')

    await session.send('Page.setWebLifecycleState', { state: 'active' })
    await post('frozen', 'after the thaw')
    expected.push('after the thaw')
    await shownInAll(t, pages, expected, 'after the thaw')
    await onePoll(t)
  })

  t.test('a tab alone in its room gets the room\'s messages, and the poll drops the room when it leaves', async t => {
    const context = await newContext(t)
    const subscribes: string[] = []
    context.on('request', request => {
      if (request.url().includes('/comet/subscribe')) subscribes.push(decodeURIComponent(request.url()))
    })
    const [, lonely] = await openTabs(t, context, ['crowd', 'lonely', 'crowd'])
    await post('lonely', 'to the lonely room')
    t.same(await messagesOf(lonely as Page, ['to the lonely room']), ['to the lonely room'])
    await onePoll(t)

    const leftAt = subscribes.length
    await (lonely as Page).fill('#room', 'crowd')
    await (lonely as Page).press('#room', 'Enter')
    const polled = await waitFor(async () => subscribes.slice(leftAt), urls => urls.some(url => !url.includes('chat:lonely')), deadline)
    const last = polled.at(-1) ?? ''
    t.notMatch(last, /chat:lonely/, 'the shared poll no longer asks for the room left')
    t.match(last, /chat:crowd/)
    await post('lonely', 'after it left')
    await post('crowd', 'in the crowd')
    t.same(await messagesOf(lonely as Page, ['in the crowd']), ['in the crowd'], 'the tab shows its new room')
    await onePoll(t)
  })
}
