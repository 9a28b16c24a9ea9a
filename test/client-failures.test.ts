// Failures that show: without onError, each distinct failure is one console warning saying what to
// check; a refusal that asking again cannot cure (404, 403) rejects `ready` and is the state
// 'refused', while the client keeps asking at its slow pace and recovers when the server answers.
import t, { type Test } from 'tap'
import { CometClient, type CometClientOptions, type CometClientState } from '../lib/client/client.js'
import { eventually, serve, sleep } from './helpers.js'

/** console.warn's calls for the rest of the test (and nothing printed). */
function captureWarnings (t: Test): string[] {
  const warnings: string[] = []
  const warn = console.warn
  console.warn = (...args: unknown[]) => { warnings.push(args.map(String).join(' ')) }
  t.teardown(() => { console.warn = warn })
  return warnings
}

/** A fetch that counts its calls. */
function counting (): { fetch: typeof fetch, calls: () => number } {
  let calls = 0
  return { fetch: async (input, init) => { calls++; return await fetch(input, init) }, calls: () => calls }
}

function clientWith (t: Test, options: CometClientOptions): { client: CometClient, states: CometClientState[] } {
  const states: CometClientState[] = []
  const client = new CometClient({ retry: { initialDelay: 1, maxDelay: 20 }, onStateChange: state => { states.push(state) }, ...options })
  t.teardown(() => { client.close() })
  return { client, states }
}

t.test('a url without the prefix (every poll a 404): ready rejects, the state says refused, one warning says to check the prefix', async t => {
  const warnings = captureWarnings(t)
  const { origin } = await serve(t)
  const polls = counting()
  const { client, states } = clientWith(t, { url: origin, fetch: polls.fetch })
  const { ready } = client.subscribe('room', () => {})
  await t.rejects(ready, {
    name: 'CometClientError',
    code: 'FST_COMET_CLIENT_REFUSED',
    statusCode: 404,
    message: new RegExp(`no fastify-comet at ${origin}/: GET ${origin}/subscribe answered 404\\. Is url the plugin's prefix .*such as '${origin}/comet'\\?`),
    cause: { code: 'HTTP_404', statusCode: 404 }
  })
  t.equal(client.state, 'refused')
  t.same(states, ['connecting', 'refused'])

  await eventually(() => polls.calls() >= 4, 5000)
  t.equal(client.state, 'refused', 'it keeps asking, and stays refused')
  t.equal(warnings.length, 1, 'one warning, not one a retry')
  t.match(warnings[0], /^fastify-comet client: no fastify-comet at .*Is url the plugin's prefix.*the client asks again every 20 ms/)
})

t.test('a 403 from authorizeSubscribe: ready rejects, the state says refused, one warning names authorizeSubscribe', async t => {
  const warnings = captureWarnings(t)
  const { origin } = await serve(t, { authorizeSubscribe: () => false })
  const polls = counting()
  const { client } = clientWith(t, { url: `${origin}/comet`, fetch: polls.fetch })
  await t.rejects(client.subscribe('private', () => {}).ready, {
    code: 'FST_COMET_CLIENT_REFUSED',
    statusCode: 403,
    message: /refused the subscription \(403 FST_COMET_FORBIDDEN: fastify-comet: not allowed to subscribe to channel "private"\): the plugin's authorizeSubscribe said no/,
    cause: { code: 'FST_COMET_FORBIDDEN', statusCode: 403 }
  })
  t.equal(client.state, 'refused')
  await eventually(() => polls.calls() >= 4, 5000)
  t.equal(warnings.length, 1, 'one warning, not one a retry')
  t.match(warnings[0], /authorizeSubscribe said no\. Check what it asks of a request/)
})

t.test('with onError, the app hears every failure and the console nothing', async t => {
  const warnings = captureWarnings(t)
  const { origin } = await serve(t)
  const errors: Error[] = []
  const { client } = clientWith(t, { url: origin, onError: error => { errors.push(error) } })
  await t.rejects(client.subscribe('room', () => {}).ready, { code: 'FST_COMET_CLIENT_REFUSED' })
  await eventually(() => errors.length >= 3, 5000)
  t.match(errors[0], { code: 'HTTP_404', statusCode: 404 }, 'the server\'s answer, as before')
  t.same(warnings, [])
})

t.test('a refused client is connected again, and delivers, once the server lets it subscribe', async t => {
  const warnings = captureWarnings(t)
  let allowed = false
  const { app, origin } = await serve(t, { authorizeSubscribe: () => allowed })
  const { client, states } = clientWith(t, { url: `${origin}/comet` })
  const received: unknown[] = []
  const { ready } = client.subscribe('room', data => { received.push(data) })
  await t.rejects(ready, { code: 'FST_COMET_CLIENT_REFUSED' })

  allowed = true
  await eventually(() => client.state === 'connected', 5000)
  // Connecting for the moment between the poll's answer and its events placed: the channel's first answer.
  t.same(states, ['connecting', 'refused', 'connecting', 'connected'])
  await eventually(() => app.comet.stats().pending === 1)
  await app.comet.publish('room', 'let in')
  await eventually(() => received.length === 1)
  t.same(received, ['let in'], 'the listener whose ready rejected gets the events')

  // Once it was connected, the same refusal is news again.
  allowed = false
  await app.comet.publish('room', 'wake the poll')
  await eventually(() => client.state === 'refused', 5000)
  t.equal(warnings.length, 2)
  t.equal(warnings[0], warnings[1])
})

t.test('a server that does not answer: one warning, reconnecting, and ready still waits', async t => {
  const warnings = captureWarnings(t)
  let calls = 0
  const down: typeof fetch = async () => {
    calls++
    throw new TypeError('fetch failed', { cause: Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }) })
  }
  const { client } = clientWith(t, { url: 'http://127.0.0.1:9/comet', fetch: down })
  let settled = false
  client.subscribe('room', () => {}).ready.then(() => { settled = true }, () => { settled = true })
  await eventually(() => calls >= 4, 5000)
  await sleep(0)
  t.equal(client.state, 'reconnecting', 'a failure that retrying may cure')
  t.equal(settled, false)
  t.same(warnings, ['fastify-comet client: no answer from http://127.0.0.1:9/comet/ (TypeError: fetch failed (ECONNREFUSED)); is the server running, and is url right? The client retries with backoff.'])
})

t.test('each distinct failure is warned once: other answers get their own words', async t => {
  const warnings = captureWarnings(t)
  const answers = [
    () => Response.json({ hello: 'world' }),
    () => Response.json({ statusCode: 503, code: 'FST_COMET_ENGINE_UNAVAILABLE', error: 'Service Unavailable', message: 'fastify-comet: the engine is unavailable' }, { status: 503 }),
    () => Response.json({ statusCode: 401, code: 'FST_UNAUTHORIZED', error: 'Unauthorized', message: 'log in first' }, { status: 401 }),
    () => Response.json({ s: 0, p: { room: 'cursor' } })
  ]
  let calls = 0
  const wrong: typeof fetch = async () => (answers[Math.min(calls++, 3)] as () => Response)()
  const { client } = clientWith(t, { url: 'http://127.0.0.1:9/comet', fetch: wrong })
  client.subscribe('room', () => {})
  await eventually(() => client.state === 'connected', 5000)
  t.match(warnings, [
    /^fastify-comet client: the answer of http:\/\/127\.0\.0\.1:9\/comet\/subscribe is not a poll reply: is url the plugin's prefix .*such as 'http:\/\/127\.0\.0\.1:9\/comet'\? The client retries with backoff\.$/,
    /^fastify-comet client: the server answered 503 FST_COMET_ENGINE_UNAVAILABLE: fastify-comet: the engine is unavailable; the client retries with backoff\.$/,
    /^fastify-comet client: the server refused the subscription \(401 FST_UNAUTHORIZED: log in first\); asking again gets the same answer until something changes\. Subscriptions not yet ready reject/
  ])
  t.equal(warnings.length, 3)
})

t.test('a poll the watchdog gave up on is warned in its own words', async t => {
  const warnings = captureWarnings(t)
  const silent: typeof fetch = async (_input, init) => await new Promise((_resolve, reject) => {
    init?.signal?.addEventListener('abort', () => { reject(new DOMException('aborted', 'AbortError')) })
  })
  const { client } = clientWith(t, { url: 'http://127.0.0.1:9/comet', fetch: silent, timeoutMargin: 10 })
  client.subscribe('room', () => {})
  await eventually(() => warnings.length > 0, 5000)
  t.same(warnings, ['fastify-comet client: no answer to a poll within 10 ms; the connection is taken for dead and the poll made again'])
})
