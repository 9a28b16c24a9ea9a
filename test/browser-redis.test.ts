// The example chat on Redis in a real browser: two pages on a two-process cluster
// (`WORKERS=2 REDIS_URL=… npm start`), chatting across the processes and across a Redis restart.
// Skipped, like browser.test.ts, where Chromium is not installed.
import type { Browser, Page } from 'playwright-core'
import t from 'tap'
import { deadline, launchChromium, messagesOf, openChat, reconnectDeadline, send, stateOf, waitFor } from './chat-browser.js'
import { startExample } from './example-process.js'
import { startRedis } from './redis-server.js'

const browser = await launchChromium()
if (browser !== undefined) clusterTests(browser)

function clusterTests (browser: Browser): void {
  t.test('two pages on a two-process cluster chat, and go on across a Redis restart with every message once, in order', async t => {
    const redis = await startRedis(t)
    const chat = await startExample(t, { redisUrl: redis.url, workers: 2 })
    // Each page is a browser context of its own, with its own connections: the cluster's primary
    // hands them to the workers in turn, so the two pages are served by different processes.
    const ada = await openChat(t, browser, chat.origin, 'cluster', 'Ada')
    const grace = await openChat(t, browser, chat.origin, 'cluster', 'Grace')

    const before: Array<[Page, string]> = [[ada, 'Hi Grace, on which process are you?'], [grace, 'No idea, and it does not matter.']]
    const expected: string[] = []
    for (const [page, text] of before) {
      await send(page, text)
      expected.push(text)
      t.same(await messagesOf(ada, expected), expected, `Ada's page shows "${text}"`)
      t.same(await messagesOf(grace, expected), expected, `Grace's page shows "${text}"`)
    }

    // Redis restarts from its snapshot, as one with persistence does; its run_id changes.
    await redis.admin().save()
    await redis.shutdown()
    const whileDown = 'Sent while Redis was down'
    await send(ada, whileDown)
    t.match(await waitFor(() => ada.locator('#error').textContent(), text => text !== '', deadline), /^Not sent: /, 'Ada\'s page says it was not sent')
    t.equal(await ada.inputValue('#text'), whileDown, 'and keeps the text to send again')

    await redis.start()
    // Sent again, as a user would, until the chat's connection to Redis is back (about a second).
    // The page empties the field on sending; it puts the text back, or clears the error, once answered.
    const outcome = async (): Promise<string> => {
      const [text, error] = await Promise.all([ada.inputValue('#text'), ada.locator('#error').textContent()])
      return text !== '' ? 'refused' : error === '' ? 'sent' : 'pending'
    }
    const giveUp = Date.now() + reconnectDeadline
    let sent = 'refused'
    while (sent === 'refused' && Date.now() < giveUp) {
      await ada.press('#text', 'Enter')
      sent = await waitFor(outcome, state => state !== 'pending', deadline)
      if (sent === 'refused') await ada.waitForTimeout(200)
    }
    t.equal(sent, 'sent', 'sent once Redis is back')
    expected.push(whileDown)
    await send(grace, 'Got it.')
    expected.push('Got it.')

    for (const [name, page] of [['Ada', ada], ['Grace', grace]] as const) {
      const shown = await waitFor(() => page.locator('#messages .text').allTextContents(), texts => JSON.stringify(texts) === JSON.stringify(expected), reconnectDeadline)
      t.same(shown, expected, `${name}'s page shows every message once, in order`)
      // Either the plugin's history carried it across, or the page was told of a gap and reloaded the room.
      t.match(await stateOf(page), /^(connected|gap-reloaded)$/, `${name}'s page is connected again`)
      t.comment(`${name}'s page: ${String(await stateOf(page))}`)
    }
  })
}
