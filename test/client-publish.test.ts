// The client's publish(): an Idempotency-Key of its own making, and retries of network failures
// and 503s with that key, so that an event is stored and delivered once however often it is sent.
import Fastify from 'fastify'
import t, { type Test } from 'tap'
import comet from '../plugin.js'
import { CometClient, type CometClientOptions } from '../lib/client/client.js'
import { closeServer, poll, serve } from './helpers.js'

function clientWith (t: Test, options: CometClientOptions): CometClient {
  // Tiny backoff: the retries come at once.
  const client = new CometClient({ share: false, retry: { initialDelay: 1, maxDelay: 5 }, ...options })
  t.teardown(() => { client.close() })
  return client
}

/** A fetch that records the Idempotency-Key of each call, and answers with `answer`. */
function recordingFetch (answer: (input: string, init: RequestInit | undefined, call: number) => Promise<Response>): { fetch: typeof fetch, keys: Array<string | undefined> } {
  const keys: Array<string | undefined> = []
  return {
    keys,
    fetch: async (input, init) => {
      keys.push((init?.headers as Record<string, string> | undefined)?.['idempotency-key'])
      return await answer(String(input), init, keys.length)
    }
  }
}

t.test('a publish whose answer is lost is sent again with the same key: one event stored, delivered once', async t => {
  const app = Fastify()
  let dropped = false
  // The first publish is stored, then its connection is cut before the answer leaves.
  app.addHook('onSend', async (request, _reply, payload) => {
    if (request.method === 'POST' && !dropped) {
      dropped = true
      request.raw.socket.destroy()
    }
    return payload
  })
  await app.register(comet, { tries: 1, sleep: 0.05 })
  t.teardown(() => closeServer(app))
  const origin = await app.listen({ port: 0, host: '127.0.0.1' })
  const start = await app.comet.position('room')
  const { fetch, keys } = recordingFetch(async (input, init) => await globalThis.fetch(input, init))
  const client = clientWith(t, { url: `${origin}/comet`, fetch })
  const { id } = await client.publish('room', { text: 'once' })
  t.equal(keys.length, 2, 'sent twice')
  t.match(keys[0], /^[0-9a-f]{32}$/, 'a key of 128 random bits')
  t.equal(keys[1], keys[0], 'the retry carries the same key')
  const history = await app.comet.history('room', { after: start })
  t.same(history.events, [{ id, data: { text: 'once' } }], 'stored once, and the answer is its id')
  t.same((await poll(origin, { room: start })).body.m?.room, [{ id, data: { text: 'once' } }], 'delivered once')
  t.equal(app.comet.stats().published, 1)
})

t.test('a 503 is retried with the same key; two publishes get two keys', async t => {
  const { app, origin } = await serve(t, { tries: 1, sleep: 0.05 })
  const { fetch, keys } = recordingFetch(async (input, init, call) => {
    if (call === 1) return new Response('{"statusCode":503,"code":"FST_COMET_ENGINE_UNAVAILABLE","message":"down"}', { status: 503 })
    return await globalThis.fetch(input, init)
  })
  const client = clientWith(t, { url: `${origin}/comet`, fetch })
  await client.publish('room', 1)
  await client.publish('room', 2)
  t.equal(keys.length, 3)
  t.equal(keys[1], keys[0], 'the 503 retried with its key')
  t.not(keys[2], keys[0], 'another publish, another key')
  t.same((await app.comet.history('room')).events.map(e => e.data), [1, 2])
})

t.test('a 4xx is not retried: the server\'s error at once', async t => {
  const { origin } = await serve(t, { authorizePublish: () => false })
  const { fetch, keys } = recordingFetch(async (input, init) => await globalThis.fetch(input, init))
  const client = clientWith(t, { url: `${origin}/comet`, fetch })
  await t.rejects(client.publish('room', 1), { code: 'FST_COMET_FORBIDDEN', statusCode: 403 })
  t.equal(keys.length, 1)
})

t.test('after 6 tries the publish rejects with the last failure', async t => {
  const { fetch, keys } = recordingFetch(async () => { throw new TypeError('fetch failed') })
  const client = clientWith(t, { url: 'http://127.0.0.1:9/comet', fetch })
  await t.rejects(client.publish('room', 1), { name: 'TypeError', message: 'fetch failed' })
  t.equal(keys.length, 6)
  t.equal(new Set(keys).size, 1, 'every try with the one key')
  const { fetch: unavailable, keys: tries } = recordingFetch(async () => new Response('{"code":"FST_COMET_TOO_MANY_PENDING","message":"busy"}', { status: 503 }))
  const busy = clientWith(t, { url: 'http://127.0.0.1:9/comet', fetch: unavailable })
  await t.rejects(busy.publish('room', 1), { code: 'FST_COMET_TOO_MANY_PENDING', statusCode: 503 })
  t.equal(tries.length, 6)
})
