// How the client behaves when polls fail: backoff with full jitter, Retry-After, no tight loops,
// and errors in the app's callbacks that do not stop it.
import t, { type Test } from 'tap'
import { CometClient, type CometClientOptions } from '../lib/client/client.js'
import { eventually, serve, sleep, within } from './helpers.js'

/** Math.random() returns `value` for the rest of the test: the jitter becomes predictable. */
function fixRandom (t: Test, value: number): void {
  const random = Math.random
  Math.random = () => value
  t.teardown(() => { Math.random = random })
}

/** A fetch that records when it is called, and answers with `answer` (or calls the real fetch). */
function recordingFetch (answer: (url: URL, init?: RequestInit) => Promise<Response>): { fetch: typeof fetch, calls: number[], urls: URL[] } {
  const calls: number[] = []
  const urls: URL[] = []
  return {
    calls,
    urls,
    fetch: async (input, init) => {
      calls.push(performance.now())
      urls.push(new URL(String(input)))
      return answer(new URL(String(input)), init)
    }
  }
}

function gapsBetween (calls: readonly number[]): number[] {
  return calls.slice(1).map((time, i) => time - (calls[i] as number))
}

function clientWith (t: Test, options: CometClientOptions): CometClient {
  const client = new CometClient({ url: 'http://127.0.0.1:9/comet', ...options })
  t.teardown(() => { client.close() })
  return client
}

const networkError = async (): Promise<Response> => { throw new TypeError('fetch failed') }

t.test('after network errors it retries with a backoff that doubles up to maxDelay', async t => {
  fixRandom(t, 0.999)
  const errors: Error[] = []
  const failing = recordingFetch(networkError)
  const client = clientWith(t, { fetch: failing.fetch, retry: { initialDelay: 20, maxDelay: 80 }, onError: error => { errors.push(error) } })
  client.subscribe('room', () => {})
  await eventually(() => failing.calls.length === 6, 5000)
  t.equal(client.state, 'reconnecting')
  const waits = gapsBetween(failing.calls)
  const ceilings = [20, 40, 80, 80, 80]
  // Node.js timers count from the event loop's cached clock, so they may seem a few ms early.
  waits.forEach((wait, i) => t.ok(wait >= (ceilings[i] as number) - 4, `retry ${i + 1} waited ${wait.toFixed(1)} ms, at least ${ceilings[i]}`))
  t.equal(errors.length, 6)
  t.match(errors[0], { name: 'TypeError', message: 'fetch failed' })
})

t.test('the jitter is a random fraction of the backoff: clients cut off together come back apart', async t => {
  fixRandom(t, 0.25)
  const failing = recordingFetch(networkError)
  const client = clientWith(t, { fetch: failing.fetch, retry: { initialDelay: 400, maxDelay: 400 } })
  client.subscribe('room', () => {})
  await eventually(() => failing.calls.length === 3, 5000)
  for (const wait of gapsBetween(failing.calls)) t.ok(wait >= 96 && wait < 390, `waited ${wait.toFixed(1)} ms: a quarter of 400`)
})

t.test('a success resets the backoff', async t => {
  fixRandom(t, 0.999)
  const { origin } = await serve(t)
  let failuresLeft = 6
  const flaky = recordingFetch(async (url, init) => {
    if (failuresLeft-- > 0) throw new TypeError('fetch failed')
    return fetch(url, init)
  })
  const client = clientWith(t, { url: `${origin}/comet`, fetch: flaky.fetch, retry: { initialDelay: 5, maxDelay: 60_000 } })
  await client.subscribe('room', () => {}).ready
  t.equal(flaky.calls.length, 7, 'six failures, then the server')

  // Without the reset the next retry would wait 5 × 2^6 = 320 ms.
  failuresLeft = 1
  client.subscribe('other', () => {})
  const started = performance.now()
  await eventually(() => client.state === 'reconnecting')
  await eventually(() => client.state === 'connected', 5000)
  t.ok(performance.now() - started < 300, 'the first retry after a success waits about initialDelay again')
})

t.test('Retry-After is honoured, even beyond the jitter', async t => {
  fixRandom(t, 0)
  let busy = true
  const { origin } = await serve(t)
  const overloaded = recordingFetch(async (url, init) => {
    if (!busy) return fetch(url, init)
    busy = false
    return Response.json({ statusCode: 503, code: 'FST_COMET_TOO_MANY_PENDING', error: 'Service Unavailable', message: 'busy' }, { status: 503, headers: { 'retry-after': '1' } })
  })
  const errors: unknown[] = []
  const client = clientWith(t, { url: `${origin}/comet`, fetch: overloaded.fetch, onError: error => { errors.push(error) } })
  await client.subscribe('room', () => {}).ready
  t.ok((overloaded.calls[1] as number) - (overloaded.calls[0] as number) >= 996, 'waited the second the server asked for')
  t.match(errors, [{ name: 'CometClientError', code: 'FST_COMET_TOO_MANY_PENDING', statusCode: 503, retryAfter: 1, message: 'busy' }])
})

t.test('a 4xx answer waits maxDelay before asking again; 408 and 429 do not', async t => {
  fixRandom(t, 0)
  const { origin } = await serve(t, { authorizeSubscribe: () => false })
  const refused = recordingFetch((url, init) => fetch(url, init))
  const errors: unknown[] = []
  const client = clientWith(t, { url: `${origin}/comet`, fetch: refused.fetch, retry: { initialDelay: 1, maxDelay: 150 }, onError: error => { errors.push(error) } })
  client.subscribe('private', () => {})
  await eventually(() => refused.calls.length === 2)
  t.ok((refused.calls[1] as number) - (refused.calls[0] as number) >= 146, 'the same request would get the same answer soon')
  t.match(errors[0], { code: 'FST_COMET_FORBIDDEN', statusCode: 403, message: /not allowed to subscribe to channel "private"/ })
  client.close()

  for (const status of [408, 429]) {
    const slowDown = recordingFetch(async () => new Response('slow down', { status }))
    const retrying = clientWith(t, { fetch: slowDown.fetch, retry: { initialDelay: 1, maxDelay: 60_000 } })
    retrying.subscribe('room', () => {})
    await eventually(() => slowDown.calls.length >= 3, 1000)
    retrying.close()
  }
})

t.test('a server that answers waiting polls at once with nothing is not asked again in a tight loop', async t => {
  fixRandom(t, 0.999)
  // A server that will not wait (one that is closing, say): every poll gets s=0 at once.
  const impatient = recordingFetch(async () => Response.json({ s: 0, p: { room: 'cursor' } }))
  const client = clientWith(t, { fetch: impatient.fetch, retry: { initialDelay: 50, maxDelay: 100 } })
  client.subscribe('room', () => {})
  await sleep(400)
  client.close()
  t.equal(impatient.urls[0]?.searchParams.get('wait'), '0', 'the first poll asks not to wait')
  t.equal(impatient.urls[1]?.searchParams.get('wait'), null, 'the next ones wait')
  t.ok(impatient.calls.length <= 8, `${impatient.calls.length} polls in 400 ms, not thousands`)
  t.equal(client.state, 'closed')
})

t.test('an answer that is not a poll reply is an error, reported and retried', async t => {
  const answers = [
    async () => Response.json({ hello: 'world' }),
    async () => new Response('<html>Bad Gateway</html>', { status: 502 }),
    async () => new Response(new ReadableStream({ start (controller) { controller.error(new Error('reset')) } }), { status: 500 })
  ]
  const wrong = recordingFetch(async () => (answers[Math.min(wrong.calls.length - 1, 2)] as () => Promise<Response>)())
  const errors: unknown[] = []
  const client = clientWith(t, { fetch: wrong.fetch, retry: { initialDelay: 1, maxDelay: 5 }, onError: error => { errors.push(error) } })
  client.subscribe('room', () => {})
  await eventually(() => errors.length >= 3)
  client.close()
  t.match(errors.slice(0, 3), [
    { code: 'FST_COMET_CLIENT_BAD_REPLY', message: /not a poll reply; is url the plugin's prefix\?/ },
    { code: 'HTTP_502', statusCode: 502, message: 'HTTP 502 <html>Bad Gateway</html>' },
    { code: 'HTTP_500', statusCode: 500, message: 'HTTP 500' }
  ])
})

t.test('in a browser, coming back online retries at once', async t => {
  // What a page has: addEventListener on the global object, and an 'online' event.
  const window = new EventTarget()
  const page = globalThis as { addEventListener?: unknown, removeEventListener?: unknown }
  page.addEventListener = window.addEventListener.bind(window)
  page.removeEventListener = window.removeEventListener.bind(window)
  t.teardown(() => {
    delete page.addEventListener
    delete page.removeEventListener
  })
  const { origin } = await serve(t)
  let offline = true
  const client = clientWith(t, {
    url: `${origin}/comet`,
    fetch: async (input, init) => {
      if (offline) throw new TypeError('fetch failed')
      return fetch(input, init)
    },
    retry: { initialDelay: 60_000, maxDelay: 60_000 }
  })
  const ready = client.subscribe('room', () => {}).ready
  await eventually(() => client.state === 'reconnecting')
  offline = false
  window.dispatchEvent(new Event('online'))
  await within(ready, 3000, 'the poll after coming back online')
  t.equal(client.state, 'connected', 'not a minute later')
})

t.test('close() during a backoff ends it, and nothing is fetched again', async t => {
  const failing = recordingFetch(networkError)
  const client = clientWith(t, { fetch: failing.fetch, retry: { initialDelay: 60_000, maxDelay: 60_000 } })
  client.subscribe('room', () => {})
  await eventually(() => client.state === 'reconnecting')
  client.close()
  await sleep(20)
  t.equal(failing.calls.length, 1)
  t.equal(client.state, 'closed')

  const closedByTheApp = recordingFetch(networkError)
  const closing: CometClient = clientWith(t, { fetch: closedByTheApp.fetch, retry: { initialDelay: 60_000, maxDelay: 60_000 }, onError: () => { closing.close() } })
  closing.subscribe('room', () => {})
  await eventually(() => closing.state === 'closed')
  await sleep(20)
  t.equal(closedByTheApp.calls.length, 1, 'nor when onError closes the client')
})

t.test('a listener or callback that throws does not stop the others, and its error is not swallowed', async t => {
  const { app, origin } = await serve(t)
  const seen: unknown[] = []
  // They are thrown again outside the client, where a page's console or a process's handler sees them.
  const uncaught: unknown[] = []
  process.setUncaughtExceptionCaptureCallback(error => { uncaught.push(error) })
  t.teardown(() => { process.setUncaughtExceptionCaptureCallback(null) })
  const client = clientWith(t, {
    url: `${origin}/comet`,
    onStateChange: state => { if (state === 'connecting') throw new Error('state callback bug') }
  })
  client.subscribe('room', data => { if (data === 1) throw new Error('listener bug') })
  await client.subscribe('room', data => { seen.push(data) }).ready
  await app.comet.publish('room', 1)
  await app.comet.publish('room', 2)
  await eventually(() => seen.length === 2)
  t.same(seen, [1, 2])
  t.match(uncaught, [{ message: 'state callback bug' }, { message: 'listener bug' }])
})
