// Retry-safe publishing: the Idempotency-Key header and publish()'s idempotencyKey on the memory
// engine, over HTTP and from server code; the window, the key limits and the bad keys. The engine
// contract (test/engine-contract.ts) holds what every engine does with a key; the race between
// processes on one Redis is in test/redis-idempotency.test.ts.
import Fastify, { type FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import comet, { fromOldest, MemoryEngine, type CometEngine, type CometOptions } from '../plugin.js'
import { poll, serve } from './helpers.js'

async function appWith (t: Test, options: CometOptions = {}): Promise<FastifyInstance> {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(comet, { tries: 1, sleep: 0.05, ...options })
  return app
}

/** A clock the test moves by hand, in milliseconds. */
function fakeClock (start = 1_700_000_000_000): { now: () => number, advance: (ms: number) => void } {
  let time = start
  return { now: () => time, advance: ms => { time += ms } }
}

async function publishWithKey (app: FastifyInstance, key: string | string[], payload: unknown, url = '/comet/publish/room'): Promise<{ statusCode: number, replayed: string | undefined, body: any }> {
  const reply = await app.inject({ method: 'POST', url, headers: { 'idempotency-key': key, 'content-type': 'application/json' }, payload: JSON.stringify(payload) })
  return { statusCode: reply.statusCode, replayed: reply.headers['idempotent-replayed'] as string | undefined, body: reply.json() }
}

t.test('a publish repeated with its Idempotency-Key over HTTP is stored and delivered once; the repeat gets the first id and Idempotent-Replayed', async t => {
  const { app, origin } = await serve(t, { tries: 1, sleep: 0.05 })
  const start = (await poll(origin, { room: '0' })).body.p.room as string
  const send = async (key: string): Promise<Response> => await fetch(`${origin}/comet/publish/room`, { method: 'POST', headers: { 'content-type': 'application/json', 'idempotency-key': key }, body: '{"text":"hi"}' })
  const first = await send('7f9c2d1e-5b4a-4e3f-9a8b-1c2d3e4f5a6b')
  t.equal(first.status, 200)
  t.equal(first.headers.get('idempotent-replayed'), null, 'the first publish is no replay')
  const { id } = await first.json() as { id: string }
  for (const key of ['7f9c2d1e-5b4a-4e3f-9a8b-1c2d3e4f5a6b', '"7f9c2d1e-5b4a-4e3f-9a8b-1c2d3e4f5a6b"']) {
    const again = await send(key)
    t.equal(again.status, 200)
    t.equal(again.headers.get('idempotent-replayed'), 'true', `a repeat with ${key}`)
    t.same(await again.json(), { id }, 'answered with the first id')
  }
  const delivered = await poll(origin, { room: start })
  t.same(delivered.body.m?.room, [{ id, data: { text: 'hi' } }], 'one event')
  t.same((await poll(origin, { room: delivered.body.p.room as string })).body.m, undefined, 'and nothing after it')
  t.equal(app.comet.stats().published, 1, 'a replay is not counted as a publish')
})

t.test('the key of a publish in the query string form is honoured too', async t => {
  const app = await appWith(t)
  const first = await publishWithKey(app, 'k1', 1, '/comet/publish?channel=room')
  const again = await publishWithKey(app, 'k1', 1, '/comet/publish?channel=room')
  t.same([again.statusCode, again.replayed, again.body], [200, 'true', first.body])
})

t.test('fastify.comet.publish with an idempotencyKey: a repeat resolves to the first id with replayed: true', async t => {
  const app = await appWith(t)
  const first = await app.comet.publish('room', { n: 1 }, { idempotencyKey: 'order-42' })
  t.same(first, { id: first.id }, 'no replayed field on the first publish')
  t.same(await app.comet.publish('room', { n: 1 }, { idempotencyKey: 'order-42' }), { id: first.id, replayed: true })
  t.same(await publishWithKey(app, 'order-42', { n: 1 }), { statusCode: 200, replayed: 'true', body: { id: first.id } }, 'server code and HTTP share the keys of a channel')
  t.same((await app.comet.history('room')).events, [{ id: first.id, data: { n: 1 } }])
  t.equal(app.comet.stats().published, 1)
})

t.test('a key reused with other data gets 422 FST_COMET_IDEMPOTENCY_KEY_REUSED, over HTTP and from server code', async t => {
  const app = await appWith(t)
  const first = await publishWithKey(app, 'k', { n: 1 })
  const reused = await publishWithKey(app, 'k', { n: 2 })
  t.equal(reused.statusCode, 422)
  t.match(reused.body, { statusCode: 422, code: 'FST_COMET_IDEMPOTENCY_KEY_REUSED', error: 'Unprocessable Entity', message: /^fastify-comet: idempotency key "k" was used on channel "room" for different data/ })
  await t.rejects(app.comet.publish('room', { n: 2 }, { idempotencyKey: 'k' }), { statusCode: 422, code: 'FST_COMET_IDEMPOTENCY_KEY_REUSED' })
  t.same((await app.comet.history('room')).events.map(e => e.id), [first.body.id], 'nothing stored')
})

const badKeys: Array<[string, string | string[]]> = [
  ['an empty key', ''],
  ['a key of 129 characters', 'k'.repeat(129)],
  ['a key with a space', 'two words'],
  ['a key with a character outside ASCII', 'clé'],
  ['a key with a comma', 'a,b'],
  ['a key sent in two headers', ['a', 'b']],
  ['a lone double quote', '"'],
  ['empty double quotes', '""']
]

for (const [what, key] of badKeys) {
  t.test(`${what} gets 400 FST_COMET_INVALID_IDEMPOTENCY_KEY, and publishes nothing`, async t => {
    const app = await appWith(t)
    const reply = await publishWithKey(app, key, 1)
    t.equal(reply.statusCode, 400)
    t.match(reply.body, { statusCode: 400, code: 'FST_COMET_INVALID_IDEMPOTENCY_KEY', error: 'Bad Request', message: /^fastify-comet: invalid idempotency key .*; a key has 1 to 128 characters/ })
    t.equal(reply.body.message.includes('undefined'), false)
    t.same((await app.comet.history('room')).events, [])
  })
}

t.test('server code with a bad idempotencyKey is refused with FST_COMET_INVALID_IDEMPOTENCY_KEY', async t => {
  const app = await appWith(t)
  for (const key of ['', 'k'.repeat(129), 'a b', 7, null, { key: 'k' }, () => 'k']) {
    await t.rejects(app.comet.publish('room', 1, { idempotencyKey: key as string }), { statusCode: 400, code: 'FST_COMET_INVALID_IDEMPOTENCY_KEY', message: /^fastify-comet: invalid idempotency key (?!undefined)/ }, String(key))
  }
  t.same(await app.comet.publish('room', 1, { idempotencyKey: 'A-z_0.9:~@+/=' }), { id: (await app.comet.history('room')).events[0]?.id }, 'every allowed character')
  t.same(await app.comet.publish('room', 1, { idempotencyKey: 'k'.repeat(128) }).then(r => r.replayed), undefined, 'the longest key')
  t.same(await app.comet.publish('room', 1, {}).then(r => r.replayed), undefined, 'no key: an ordinary publish')
})

t.test('an engine without publishIdempotent: a keyed publish gets 501 FST_COMET_IDEMPOTENCY_UNSUPPORTED, an unkeyed one works', async t => {
  const memory = new MemoryEngine()
  t.teardown(() => memory.close())
  const engine: CometEngine = {
    publish: async (channel, json) => await memory.publish(channel, json),
    read: (channel, position, limit) => memory.read(channel, position, limit),
    watch: (channel, watcher) => memory.watch(channel, watcher),
    unwatch: (channel, watcher) => memory.unwatch(channel, watcher),
    channelCount: () => memory.channelCount(),
    close: async () => {}
  }
  const app = await appWith(t, { engine })
  const reply = await publishWithKey(app, 'k', 1)
  t.equal(reply.statusCode, 501)
  t.match(reply.body, { code: 'FST_COMET_IDEMPOTENCY_UNSUPPORTED', message: /^fastify-comet: the engine does not support idempotency keys/ })
  await t.rejects(app.comet.publish('room', 1, { idempotencyKey: 'k' }), { statusCode: 501, code: 'FST_COMET_IDEMPOTENCY_UNSUPPORTED' })
  t.equal((await app.inject({ method: 'POST', url: '/comet/publish/room' })).statusCode, 200)
})

t.test('within idempotencyWindow a key is a replay; from its end the key is forgotten and publishes a new event', async t => {
  const clock = fakeClock()
  const engine = new MemoryEngine({ idempotencyWindow: 60, now: clock.now })
  t.teardown(() => engine.close())
  const app = await appWith(t, { engine })
  const first = await app.comet.publish('room', 1, { idempotencyKey: 'k' })
  clock.advance(59_999)
  t.same(await app.comet.publish('room', 1, { idempotencyKey: 'k' }), { id: first.id, replayed: true }, 'a millisecond before the end')
  clock.advance(1)
  const after = await app.comet.publish('room', 2, { idempotencyKey: 'k' })
  t.equal(after.replayed, undefined, 'at the end of the window: a new event, even with other data')
  t.not(after.id, first.id)
  t.same(await app.comet.publish('room', 2, { idempotencyKey: 'k' }), { id: after.id, replayed: true }, 'and a new window from it')
  t.equal(engine.historyUsage().idempotencyKeys, 1, 'the expired key is gone')
})

t.test('the idempotencyWindow option configures the built-in engine', async t => {
  const app = await appWith(t, { idempotencyWindow: 0.05 })
  const first = await app.comet.publish('room', 1, { idempotencyKey: 'k' })
  await new Promise(resolve => setTimeout(resolve, 80))
  t.not((await app.comet.publish('room', 1, { idempotencyKey: 'k' })).id, first.id, 'forgotten after 50 ms')
})

t.test('the keys of a channel no longer published on are swept at the end of their window', async t => {
  const engine = new MemoryEngine({ idempotencyWindow: 0.03 })
  t.teardown(() => engine.close())
  await engine.publishIdempotent('room', '1', 'k')
  const before = engine.historyUsage()
  t.equal(before.idempotencyKeys, 1)
  await new Promise(resolve => setTimeout(resolve, 120))
  t.same(engine.historyUsage().idempotencyKeys, 0)
  t.ok(engine.historyUsage().bytes < before.bytes, 'and their bytes')
})

t.test('idempotencyKeys bounds the keys remembered: past it the oldest is forgotten first', async t => {
  const app = await appWith(t, { idempotencyKeys: 3 })
  const ids = []
  for (const key of ['k1', 'k2', 'k3', 'k4']) ids.push((await app.comet.publish('room', key, { idempotencyKey: key })).id)
  t.same(await app.comet.publish('room', 'k4', { idempotencyKey: 'k4' }), { id: ids[3], replayed: true }, 'the newest is remembered')
  t.same(await app.comet.publish('room', 'k2', { idempotencyKey: 'k2' }), { id: ids[1], replayed: true })
  t.not((await app.comet.publish('room', 'k1', { idempotencyKey: 'k1' })).id, ids[0], 'the oldest was forgotten: a new event')
})

t.test('historyBytes counts the keys: many keys keep the held bytes within the budget, and the newest events and keys stay', async t => {
  const engine = new MemoryEngine({ historyBytes: 50_000, historyTtl: Infinity })
  t.teardown(() => engine.close())
  let last = { id: '', replayed: false }
  for (let i = 0; i < 5000; i++) {
    last = await engine.publishIdempotent(`c${i % 10}`, '1', `key-${i}`)
    if (engine.historyUsage().bytes > 50_000) {
      t.fail(`over the budget after publish ${i}: ${engine.historyUsage().bytes}`)
      return
    }
  }
  const usage = engine.historyUsage()
  t.ok(usage.idempotencyKeys > 20 && usage.idempotencyKeys < 5000, `some keys kept, the oldest forgotten (${usage.idempotencyKeys})`)
  t.ok(usage.channels === 10, 'every channel still holds its newest events')
  t.same(await engine.publishIdempotent('c9', '1', 'key-4999'), { id: last.id, replayed: true }, 'the newest key is remembered')
  t.equal((await engine.publishIdempotent('c0', '1', 'key-0')).replayed, false, 'the oldest was forgotten')
})

t.test('historyBytes counts each key: its channel, key, id and fingerprint, and a fixed cost', async t => {
  const plain = new MemoryEngine()
  const keyed = new MemoryEngine()
  t.teardown(() => Promise.all([plain.close(), keyed.close()]))
  await plain.publish('room', '1')
  await keyed.publishIdempotent('room', '1', 'k'.repeat(100))
  t.ok(keyed.historyUsage().bytes - plain.historyUsage().bytes > 100 + 'room'.length, 'the key costs at least its characters')
})

t.test('keys alone cannot push the newest event out of the budget', async t => {
  const engine = new MemoryEngine({ historyBytes: 3_000, historyTtl: Infinity })
  t.teardown(() => engine.close())
  for (let i = 0; i < 50; i++) await engine.publishIdempotent('room', JSON.stringify(i), `key-${i}`)
  const events = engine.read('room', fromOldest, 100).events
  t.ok(events.length > 0 && events[events.length - 1]?.json === '49', 'the newest event is held')
  t.ok(engine.historyUsage().bytes <= 3_000)
})

t.test('an event and its key over the whole budget are both kept, as a publish never fails for it', async t => {
  const engine = new MemoryEngine({ historyBytes: 400, historyTtl: Infinity })
  t.teardown(() => engine.close())
  await engine.publishIdempotent('room', '1', 'old-key')
  const newest = await engine.publishIdempotent('room', '2', 'new-key')
  t.same(await engine.publishIdempotent('room', '2', 'new-key'), { id: newest.id, replayed: true }, 'the newest key is remembered')
  t.same(engine.read('room', fromOldest, 10).events.map(e => e.id), [newest.id])
  t.equal(engine.historyUsage().idempotencyKeys, 1, 'the older key went')
})
