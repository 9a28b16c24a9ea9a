import Fastify from 'fastify'
import t from 'tap'
import comet, { MemoryEngine } from '../plugin.js'
import { counters, countersWith, eventually, poll, serve, sleep } from './helpers.js'

t.test('a client that hangs up mid-poll is forgotten at once', async t => {
  const { app, origin } = await serve(t)
  const hangUp = new AbortController()
  const abandoned = poll(origin, { room: '0', lobby: '0' }, { signal: hangUp.signal })
  await eventually(() => app.comet.stats().pending === 1)
  t.equal(app.comet.stats().channels, 2)

  hangUp.abort()
  await t.rejects(abandoned, { name: 'AbortError' })
  await eventually(() => app.comet.stats().pending === 0)
  t.same(counters(app.comet.stats()), countersWith({ hangUps: 1 }), 'its channels held nothing else and are gone too')

  // A later publish reaches nobody and breaks nothing.
  await app.comet.publish('room', 'after')
  t.equal(app.comet.stats().delivered, 0)
})

t.test('a hang-up leaves the other polls on the same channel waiting', async t => {
  const { app, origin } = await serve(t)
  const hangUp = new AbortController()
  const abandoned = poll(origin, { room: '0' }, { signal: hangUp.signal }).catch(() => 'aborted')
  const staying = poll(origin, { room: '0' })
  await eventually(() => app.comet.stats().pending === 2)
  hangUp.abort()
  t.equal(await abandoned, 'aborted')
  await eventually(() => app.comet.stats().pending === 1)
  await app.comet.publish('room', 'hi')
  t.same((await staying).body.m?.room?.map(e => e.data), ['hi'])
  t.equal(app.comet.stats().delivered, 1)
})

t.test('fastify.close() answers every waiting poll at once with s=0 and its cursors, and completes', async t => {
  const { app, origin } = await serve(t)
  const waiting = [poll(origin, { a: '0' }), poll(origin, { a: '0', b: '0' }), poll(origin, { c: '0' })]
  await eventually(() => app.comet.stats().pending === 3)
  await app.close()
  const replies = await Promise.all(waiting)
  t.same(replies.map(r => r.status), [200, 200, 200])
  t.same(replies.map(r => r.body.s), [0, 0, 0])
  t.same(replies.map(r => Object.keys(r.body.p)), [['a'], ['a', 'b'], ['c']])
})

t.test('a poll that reaches the bus while the server closes is answered at once', async t => {
  const app = Fastify()
  let release: () => void = () => {}
  const held = new Promise<void>(resolve => { release = resolve })
  // The authorization hook holds the poll until close() has begun.
  await app.register(comet, { authorizeSubscribe: async () => { await held; return true } })
  const late = app.inject('/comet/subscribe?subscribed[room]=0')
  await sleep(20)
  const closing = app.close()
  release()
  const reply = await late
  await closing
  t.equal(reply.statusCode, 200)
  t.same(app.comet.stats().answered, { events: 0, timeout: 0, wait0: 0, close: 1 }, 'counted as answered for the close')
  t.equal(reply.json().s, 0)
})

t.test('a channel with no waiting poll and no event younger than historyTtl is dropped', async t => {
  // The engine's clock moves only when the test says, so that a slow poll on a loaded machine
  // cannot let the event expire before the first check; its sweep timer still runs every 50 ms.
  let now = 1_700_000_000_000
  const engine = new MemoryEngine({ historyTtl: 0.05, now: () => now })
  t.teardown(() => engine.close())
  const { app, origin } = await serve(t, { engine, tries: 1, sleep: 0.01 })
  await app.comet.publish('old', 1)
  const { body } = await poll(origin, { quiet: '0' })
  t.equal(body.s, 0)
  t.equal(app.comet.stats().channels, 1, 'a channel that only had a poll goes when the poll ends')
  now += 1000
  await eventually(() => app.comet.stats().channels === 0)
  t.pass('the channel with the expired event is swept')
})

t.test('a channel that holds events outlives its polls until they expire', async t => {
  const { app, origin } = await serve(t, { historyTtl: 60, tries: 1, sleep: 0.01 })
  await app.comet.publish('room', 1)
  await poll(origin, { room: 'all' })
  await sleep(30)
  t.equal(app.comet.stats().channels, 1)
})

t.test('the engine the plugin created is closed with the server; an engine passed in stays open', async t => {
  const own = Fastify()
  await own.register(comet)
  await own.close()
  await t.rejects(own.comet.publish('room', 1), { code: 'FST_COMET_CLOSED', statusCode: 503 })

  const engine = new MemoryEngine({ historyTtl: Infinity })
  t.teardown(() => engine.close())
  const borrowed = Fastify()
  await borrowed.register(comet, { engine })
  await borrowed.comet.publish('room', 1)
  await borrowed.close()
  await t.resolves(engine.publish('room', '2'), 'the engine still takes events')
  t.equal(engine.channelCount(), 1)
})

t.test('two servers on one engine share channels', async t => {
  const engine = new MemoryEngine()
  t.teardown(() => engine.close())
  const first = await serve(t, { engine })
  const second = await serve(t, { engine })
  const reply = poll(second.origin, { room: '0' })
  await eventually(() => second.app.comet.stats().pending === 1)
  await first.app.comet.publish('room', 'across')
  t.same((await reply).body.m?.room?.map(e => e.data), ['across'])
})

t.test('a client that hangs up while authorizeSubscribe still runs is forgotten too', async t => {
  // Regression: the hang-up came before the poll listened for it, and the poll waited its full time.
  const { app, origin } = await serve(t, {
    authorizeSubscribe: async () => { await sleep(100); return true }
  })
  const hangUp = new AbortController()
  const abandoned = poll(origin, { room: '0' }, { signal: hangUp.signal }).catch(() => 'aborted')
  await sleep(20)
  hangUp.abort()
  t.equal(await abandoned, 'aborted')
  await sleep(150)
  t.same(counters(app.comet.stats()), countersWith({ hangUps: 1 }))
})
