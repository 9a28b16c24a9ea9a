// The example chat in a real browser: headless Chromium, driven by playwright-core, against the
// example server run as a process. Skipped where Chromium is not installed, unless
// COMET_BROWSER_TEST=required (as in .ci/run). CHROMIUM_PATH names another Chromium or Chrome;
// UPDATE_SCREENSHOT=1 redraws docs/chat.png.
import { fileURLToPath } from 'node:url'
import type { Browser, Page } from 'playwright-core'
import t from 'tap'
import { deadline, launchChromium, messagesOf, namesOf, openChat, openChatIn, reconnectDeadline, send, stateOf, waitFor, waitForState } from './chat-browser.js'
import { startExample } from './example-process.js'

const screenshotPath = fileURLToPath(new URL('../docs/chat.png', import.meta.url))

const browser = await launchChromium()
if (browser !== undefined) await browserTests(browser)

async function browserTests (browser: Browser): Promise<void> {
  const { origin } = await startExample(t)

  t.test('two pages chat: a message sent in one appears in the other, in order', async t => {
    const ada = await openChat(t, browser, origin, 'lobby', 'Ada')
    const grace = await openChat(t, browser, origin, 'lobby', 'Grace')
    const conversation: Array<[Page, string]> = [
      [ada, 'Hi Grace! Is the deploy done?'],
      [grace, 'Yes, a minute ago. Everything is green.'],
      [ada, 'Great, thanks!']
    ]
    const expected: string[] = []
    for (const [page, text] of conversation) {
      await send(page, text)
      expected.push(text)
      t.same(await messagesOf(ada, expected), expected, `Ada's page shows "${text}" in its place`)
      t.same(await messagesOf(grace, expected), expected, `Grace's page shows "${text}" in its place`)
    }
    t.same(await namesOf(grace), ['Ada', 'Grace', 'Ada'])
    t.equal(await stateOf(grace), 'connected')
    if (process.env.UPDATE_SCREENSHOT !== undefined) await grace.screenshot({ path: screenshotPath })
  })

  t.test('a page opened later shows the messages sent before, from the server\'s store', async t => {
    for (const text of ['first', 'second']) {
      const response = await fetch(`${origin}/rooms/history/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'Ada', text })
      })
      t.equal(response.status, 201)
    }
    const late = await openChat(t, browser, origin, 'history', 'Grace')
    t.same(await messagesOf(late, ['first', 'second']), ['first', 'second'])
  })

  t.test('a message sent after the page read the room, before it subscribed, shows once: the page subscribes after the room\'s position', async t => {
    const post = async (text: string): Promise<void> => {
      const response = await fetch(`${origin}/rooms/between/messages`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'Ada', text }) })
      t.equal(response.status, 201)
    }
    await post('before')
    const context = await browser.newContext()
    t.teardown(() => context.close())
    let held = false
    await context.route('**/rooms/between/messages', async route => {
      if (route.request().method() !== 'GET' || held) return await route.continue()
      held = true
      // The page gets the room as it was, and subscribes only once a message came after it.
      const response = await route.fetch()
      await post('between')
      await route.fulfill({ response })
    })
    const page = await openChatIn(t, context, origin, 'between', 'Grace')
    t.same(await messagesOf(page, ['before', 'between']), ['before', 'between'])
  })

  t.test('a message made of HTML and script markup shows as literal text and runs nothing', async t => {
    const sender = await openChat(t, browser, origin, 'markup', 'Mallory')
    const reader = await openChat(t, browser, origin, 'markup', 'Bob')
    const markup = '<img src=x onerror="globalThis.injected=1"><script>globalThis.injected=2</script><b>bold</b>'
    await send(sender, markup)
    // A message sent after it: once it shows, an image's onerror would have run.
    await send(sender, 'after the markup')
    for (const page of [sender, reader]) {
      t.same(await messagesOf(page, [markup, 'after the markup']), [markup, 'after the markup'], 'the markup is the text')
      t.equal(await page.locator('#messages img, #messages script, #messages b').count(), 0, 'no element was made of it')
      t.equal(await page.evaluate(() => (globalThis as { injected?: unknown }).injected), undefined, 'no script ran')
    }
  })

  t.test('a message shows as sending… until the server accepted it, and as not sent when the POST fails', async t => {
    const page = await openChat(t, browser, origin, 'sending', 'Ada')
    let release!: () => void
    const accepted = new Promise<void>(resolve => { release = resolve })
    let fail = false
    await page.route('**/rooms/sending/messages', async route => {
      if (route.request().method() !== 'POST') return await route.continue()
      if (fail) return await route.abort('connectionrefused')
      await accepted
      await route.continue()
    })
    const outbox = async (): Promise<string[]> => await page.locator('#outbox li').allTextContents()
    await send(page, 'slow')
    t.same(await waitFor(outbox, texts => texts.length > 0, deadline), ['slowsending…'], 'sending… while the server has not answered')
    t.same(await messagesOf(page, []), [], 'not in the list yet')
    release()
    t.same(await messagesOf(page, ['slow']), ['slow'], 'accepted, it shows in the list')
    t.same(await waitFor(outbox, texts => texts.length === 0, deadline), [], 'and no longer as sending')

    fail = true
    await send(page, 'lost')
    t.same(await waitFor(outbox, texts => texts.includes('lostnot sent'), deadline), ['lostnot sent'], 'a failed POST shows as not sent')
    t.match(await page.locator('#error').textContent(), /^Not sent: /, 'with the reason')
    t.equal(await page.inputValue('#text'), 'lost', 'its text is back in the box')
    t.same(await messagesOf(page, ['slow']), ['slow'])
  })

  t.test('a page that was offline shows every message sent meanwhile, once each, in order', async t => {
    const sender = await openChat(t, browser, origin, 'offline', 'Ada')
    const away = await openChat(t, browser, origin, 'offline', 'Grace')
    await send(sender, 'before')
    t.same(await messagesOf(away, ['before']), ['before'])

    await away.context().setOffline(true)
    // A poll already sent is not cut off by going offline: its answer may still bring the first
    // message. The one after it fails, and the page says so.
    await send(sender, 'going offline')
    t.equal(await waitForState(away, 'reconnecting', deadline), 'reconnecting', 'the offline page shows it is reconnecting')
    const meanwhile = ['one', 'two', 'three', 'four']
    for (const text of meanwhile) await send(sender, text)
    const sent = ['before', 'going offline', ...meanwhile]
    t.same(await messagesOf(sender, sent), sent, 'the sender shows them')
    const shownOffline = await away.locator('#messages .text').allTextContents()
    t.same(shownOffline.filter(text => meanwhile.includes(text)), [], 'the offline page has not got them')

    await away.context().setOffline(false)
    t.same(await messagesOf(away, sent), sent, 'back online, it shows all of them in order')
    // Anything repeated would come before a message sent now.
    await send(sender, 'after')
    const all = [...sent, 'after']
    t.same(await messagesOf(away, all), all, 'and each once')
    t.equal(await stateOf(away), 'connected')
  })

  t.test('a restarted server: the page shows it is reconnecting, recovers by itself and reloads the room after the gap', async t => {
    // A server of its own, restarted on the same port, so that the page's URLs stay valid.
    const first = await startExample(t)
    const page = await openChat(t, browser, first.origin, 'restart', 'Ada')
    await send(page, 'before the restart')
    t.same(await messagesOf(page, ['before the restart']), ['before the restart'])

    t.equal(await first.stop('SIGKILL'), null, 'the server is killed')
    t.equal(await waitForState(page, 'reconnecting', deadline), 'reconnecting', 'the page shows it is reconnecting')

    const second = await startExample(t, { port: first.port })
    t.equal(await waitForState(page, 'gap-reloaded', reconnectDeadline), 'gap-reloaded', 'it reconnects and reports the gap it reloaded')
    // The restarted server's store is empty, as its history: the reloaded room is the server's.
    t.same(await messagesOf(page, []), [], 'the room is shown as the server has it now')

    const response = await fetch(`${second.origin}/rooms/restart/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'Grace', text: 'after the restart' })
    })
    t.equal(response.status, 201)
    t.same(await messagesOf(page, ['after the restart']), ['after the restart'], 'messages flow again')
  })
}
