// The plugin with @fastify/cors, set up as docs/operations.md (CORS) says: registered first, with Retry-After
// exposed, so that a page on another origin can read the Retry-After of a 503 and back off.
import cors from '@fastify/cors'
import Fastify, { type FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import comet from '../plugin.js'
import { closeServer, eventually } from './helpers.js'

const page = 'https://app.example.com'

async function serveWithCors (t: Test, exposedHeaders?: string[]): Promise<{ app: FastifyInstance, origin: string }> {
  const app = Fastify()
  await app.register(cors, { origin: page, ...(exposedHeaders === undefined ? {} : { exposedHeaders }) })
  await app.register(comet, { maxPending: 1 })
  t.teardown(() => closeServer(app))
  const origin = await app.listen({ port: 0, host: '127.0.0.1' })
  return { app, origin }
}

t.test('with exposedHeaders: [\'Retry-After\'], a page on another origin can read the Retry-After of a 503', async t => {
  const { app, origin } = await serveWithCors(t, ['Retry-After'])
  const waiting = fetch(`${origin}/comet/subscribe?subscribed[room]=0`, { headers: { origin: page } })
  await eventually(() => app.comet.stats().pending === 1)

  const refused = await fetch(`${origin}/comet/subscribe?subscribed[other]=0`, { headers: { origin: page } })
  t.equal(refused.status, 503)
  t.equal(refused.headers.get('access-control-allow-origin'), page)
  t.equal(refused.headers.get('access-control-expose-headers'), 'Retry-After', 'what lets the browser show it to the page')
  t.equal(refused.headers.get('retry-after'), '2')
  t.match(await refused.json(), { code: 'FST_COMET_TOO_MANY_PENDING' })

  await app.comet.publish('room', 1)
  const answered = await waiting
  t.equal(answered.headers.get('access-control-allow-origin'), page, 'polls carry the CORS headers too')
  t.equal((await answered.json() as { s: number }).s, 1)
})

t.test('a preflighted publish from the page is allowed, and the publish goes through', async t => {
  const { origin } = await serveWithCors(t, ['Retry-After'])
  const preflight = await fetch(`${origin}/comet/publish?channel=room`, {
    method: 'OPTIONS',
    headers: { origin: page, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' }
  })
  t.equal(preflight.status, 204)
  t.equal(preflight.headers.get('access-control-allow-origin'), page)
  const published = await fetch(`${origin}/comet/publish?channel=room`, {
    method: 'POST',
    headers: { origin: page, 'content-type': 'application/json' },
    body: '{"a":1}'
  })
  t.equal(published.status, 200)
  t.equal(published.headers.get('access-control-allow-origin'), page)
})

t.test('without exposedHeaders, Retry-After is sent but not exposed to the page', async t => {
  const { app, origin } = await serveWithCors(t)
  const waiting = fetch(`${origin}/comet/subscribe?subscribed[room]=0`, { headers: { origin: page } })
  await eventually(() => app.comet.stats().pending === 1)
  const refused = await fetch(`${origin}/comet/subscribe?subscribed[other]=0`, { headers: { origin: page } })
  t.equal(refused.status, 503)
  t.equal(refused.headers.get('retry-after'), '2')
  t.equal(refused.headers.get('access-control-expose-headers'), null, 'a browser hides Retry-After from the page')
  await refused.arrayBuffer()
  await app.comet.publish('room', 1)
  await (await waiting).arrayBuffer()
})

t.test('with Comet-Wait exposed too, a page on another origin can read how long a poll may wait', async t => {
  const { origin } = await serveWithCors(t, ['Retry-After', 'Comet-Wait'])
  const answer = await fetch(`${origin}/comet/subscribe?subscribed[room]=0&wait=0`, { headers: { origin: page } })
  t.equal(answer.status, 200)
  t.equal(answer.headers.get('comet-wait'), '40', 'tries × sleep of the defaults')
  t.match(answer.headers.get('access-control-expose-headers'), /\bComet-Wait\b/, 'what lets the client\'s watchdog see it')
})
