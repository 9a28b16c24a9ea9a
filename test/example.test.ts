// The example chat server as `npm start` runs it: a real process, on a free port, stopped by a signal.
import parsePrometheus from 'parse-prometheus-text-format'
import t from 'tap'
import { startExample } from './example-process.js'
import { poll, sleep, within, type PollReply } from './helpers.js'

// One server for the tests that do not stop it; each uses a room of its own.
const { origin, output } = await startExample(t)

async function postMessage (room: string, body: unknown): Promise<{ status: number, body: any }> {
  const response = await fetch(`${origin}/rooms/${room}/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body)
  })
  return { status: response.status, body: await response.json() }
}

async function storedMessages (room: string): Promise<unknown[]> {
  return (await (await fetch(`${origin}/rooms/${room}/messages`)).json() as { messages: unknown[] }).messages
}

/** Resolves once the server holds at least one waiting poll; rejects after a few seconds of asking. */
async function pollWaiting (serverOrigin: string): Promise<void> {
  const deadline = Date.now() + 5000
  for (let asked = 0; asked < 500 && Date.now() < deadline; asked++) {
    const { pending } = await (await fetch(`${serverOrigin}/stats`)).json() as { pending: number }
    if (pending > 0) return
    await sleep(10)
  }
  throw new Error(`no poll waited on ${serverOrigin} within 5 s`)
}

t.test('a message posted to a room is trimmed, stored, and published on the room\'s channel', async t => {
  const waiting = poll(origin, { 'chat:posting': '0' })
  await pollWaiting(origin)

  const posted = await postMessage('posting', { name: '  Ada ', text: ' hello\n' })
  t.equal(posted.status, 201)
  t.match(posted.body, { seq: Number, name: 'Ada', text: 'hello', at: String })
  t.ok(!Number.isNaN(Date.parse(posted.body.at)), 'at is a date')

  // Far below the time a poll waits, at whose end the message would come too, read again.
  const { body } = await within(waiting, 5000, 'the poll')
  t.same(body.m?.['chat:posting']?.map(event => event.data), [posted.body], 'the subscriber gets the stored message')
  t.same(await storedMessages('posting'), [posted.body], 'GET /rooms/:room/messages returns it')
})

t.test('bad messages and room names get 400 in Fastify\'s error format, and nothing is stored', async t => {
  const bad: Array<[string, string, unknown, RegExp]> = [
    ['no text', 'refused', { name: 'Ada' }, /must have required property 'text'/],
    ['blank text', 'refused', { name: 'Ada', text: ' \n ' }, /^body\/text must match pattern/],
    ['text too long', 'refused', { name: 'Ada', text: 'x'.repeat(1001) }, /^body\/text must NOT have more than 1000 characters/],
    ['blank name', 'refused', { name: '   ', text: 'hi' }, /^body\/name must match pattern/],
    ['name too long', 'refused', { name: 'x'.repeat(41), text: 'hi' }, /^body\/name must NOT have more than 40 characters/],
    ['text not a string', 'refused', { name: 'Ada', text: { html: '<b>' } }, /^body\/text must be string/],
    ['room with a colon', 'a:b', { name: 'Ada', text: 'hi' }, /^params\/room must match pattern/],
    ['room too long', 'r'.repeat(65), { name: 'Ada', text: 'hi' }, /^params\/room must match pattern/]
  ]
  for (const [what, room, message, error] of bad) {
    const { status, body } = await postMessage(room, message)
    t.equal(status, 400, what)
    t.same(Object.keys(body).sort(), ['code', 'error', 'message', 'statusCode'], `${what}: Fastify's error shape`)
    t.match(body, { statusCode: 400, code: 'FST_ERR_VALIDATION', error: 'Bad Request', message: error }, what)
  }
  t.same(await storedMessages('refused'), [])
})

t.test('the plugin\'s HTTP publish route is refused with 403: only the server publishes', async t => {
  for (const path of ['/comet/publish/chat:forbidden', '/comet/publish?channel=chat:forbidden']) {
    const response = await fetch(`${origin}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ seq: 1, name: 'Mallory', text: '<script>alert(1)</script>', at: '' })
    })
    t.equal(response.status, 403, path)
    t.match(await response.json(), { statusCode: 403, code: 'FST_COMET_FORBIDDEN', error: 'Forbidden' }, path)
  }
  // wait=0: answered at once, with whatever the channel holds.
  const held = await (await fetch(`${origin}/comet/subscribe?subscribed[chat:forbidden]=all&wait=0`)).json() as PollReply
  t.same(held.m, undefined, 'nothing was published')
})

t.test('the page, its script and style, and the plugin\'s client are served', async t => {
  const page = await fetch(`${origin}/`)
  t.equal(page.status, 200)
  t.match(page.headers.get('content-type'), /^text\/html/)
  const html = await page.text()
  t.match(html, '<script type="module" src="/app.js"></script>')
  t.match(html, '<link rel="stylesheet" href="/style.css">')

  for (const [path, type] of [['/app.js', /javascript/], ['/style.css', /^text\/css/], ['/comet/client.js', /javascript/]] as const) {
    const response = await fetch(`${origin}${path}`)
    t.equal(response.status, 200, path)
    t.match(response.headers.get('content-type'), type, path)
    await response.arrayBuffer()
  }
  const app = await (await fetch(`${origin}/app.js`)).text()
  t.match(app, "import { CometClient } from '/comet/client.js'", 'the page imports the client the plugin serves')
  const client = await (await fetch(`${origin}/comet/client.js`)).text()
  t.match(client, /export (class CometClient\b|\{[^}]*\bCometClient\b)/, 'the client is an ES module exporting CometClient')
})

t.test('npm start prints one line with the address to open, and polls and posts add nothing', async t => {
  const waiting = poll(origin, { 'chat:quiet': '0' })
  await pollWaiting(origin)
  t.equal((await postMessage('quiet', { name: 'Ada', text: 'shh' })).status, 201)
  await waiting
  await (await fetch(`${origin}/comet/subscribe?subscribed[chat:quiet]=0&wait=0`)).arrayBuffer()
  t.equal(output(), `Chat ready: open ${origin} in two browser windows (Ctrl-C stops it)\n`)
})

t.test('GET /metrics serves the plugin\'s metrics in the Prometheus text format', async t => {
  const response = await fetch(`${origin}/metrics`)
  t.equal(response.status, 200)
  t.match(response.headers.get('content-type'), /^text\/plain; version=0\.0\.4/)
  const families = parsePrometheus(await response.text())
  const types = new Map(families.map(family => [family.name, family.type]))
  t.equal(types.get('comet_waiting_polls'), 'GAUGE')
  t.equal(types.get('comet_events_published_total'), 'COUNTER')
  t.equal(types.get('comet_publish_to_answer_seconds'), 'HISTOGRAM')
})

t.test('SIGTERM answers the waiting poll and ends the process with code 0', async t => {
  const server = await startExample(t)
  const waiting = poll(server.origin, { 'chat:closing': '0' })
  await pollWaiting(server.origin)

  const exitCode = server.stop('SIGTERM')
  const { status, body } = await within(waiting, 5000, 'the waiting poll')
  t.equal(status, 200)
  t.match(body, { s: 0, p: { 'chat:closing': String } }, 'answered with nothing new, and a cursor to come back with')
  t.equal(await exitCode, 0)
})
