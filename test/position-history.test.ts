// fastify.comet.position() and history(): where a channel is, and what it holds, read by server
// code, on both engines. A page rendered with a position and subscribing from it misses nothing.
import type { FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import type { CometOptions } from '../plugin.js'
import { RedisEngine } from '../lib/engines/redis/index.js'
import { poll, serve } from './helpers.js'
import { startRedis } from './redis-server.js'

const redis = await startRedis(t)
let prefixes = 0

type MakeServer = (t: Test, historySize: number) => Promise<{ app: FastifyInstance, origin: string }>

const engines: Array<[string, MakeServer]> = [
  ['memory engine', async (t, historySize) => await serve(t, { tries: 1, sleep: 0.05, historySize })],
  ['Redis engine', async (t, historySize) => {
    const engine = new RedisEngine({ redis: redis.url, keyPrefix: `ph${prefixes++}:`, historySize })
    t.teardown(() => engine.close())
    return await serve(t, { tries: 1, sleep: 0.05, engine } satisfies CometOptions)
  }]
]

for (const [name, makeServer] of engines) {
  t.test(`${name}: a page rendered with a position, then subscribing from it, gets exactly what was published in between`, async t => {
    const { app, origin } = await makeServer(t, 100)
    await app.comet.publish('room', 'long before')
    await app.comet.publish('room', 'before')
    const position = await app.comet.position('room')
    const between = [await app.comet.publish('room', 'one'), await app.comet.publish('room', 'two')]
    const first = await poll(origin, { room: position })
    t.same(first.body.m?.room, [{ id: between[0]?.id, data: 'one' }, { id: between[1]?.id, data: 'two' }])
    t.equal(first.body.gap, undefined)
    t.same((await app.comet.history('room', { after: position })).events.map(e => e.data), ['one', 'two'], 'history after the position: the same')
  })

  t.test(`${name}: the position of a channel never used sees its first event`, async t => {
    const { app, origin } = await makeServer(t, 100)
    const position = await app.comet.position('fresh')
    const { id } = await app.comet.publish('fresh', { n: 1 })
    t.same((await poll(origin, { fresh: position })).body.m?.fresh, [{ id, data: { n: 1 } }])
    t.same(await app.comet.history('fresh', { after: id }), { events: [], next: id, gap: false }, 'nothing after the newest event')
  })

  t.test(`${name}: history from the oldest, at most the limit, continues from next`, async t => {
    const { app } = await makeServer(t, 100)
    const ids = []
    for (const n of [1, 2, 3, 4, 5]) ids.push((await app.comet.publish('room', { n })).id)
    const first = await app.comet.history('room', { limit: 2 })
    t.same(first, { events: [{ id: ids[0], data: { n: 1 } }, { id: ids[1], data: { n: 2 } }], next: ids[1], gap: false })
    const rest = await app.comet.history('room', { after: first.next })
    t.same(rest.events.map(e => e.id), ids.slice(2), 'the default limit (batchSize) takes the rest')
    t.equal(rest.next, ids[4])
    const empty = await app.comet.history('nothing-here')
    t.same([empty.events, empty.gap], [[], false])
    const { id } = await app.comet.publish('nothing-here', 'later')
    t.same((await app.comet.history('nothing-here', { after: empty.next })).events.map(e => e.id), [id], 'next of an empty channel is a position: later events come after it')
  })

  t.test(`${name}: history after a cursor older than what is held reports a gap, as a poll does`, async t => {
    const { app, origin } = await makeServer(t, 2)
    const old = (await app.comet.publish('room', 1)).id
    for (const n of [2, 3, 4]) await app.comet.publish('room', n)
    const history = await app.comet.history('room', { after: old })
    t.same([history.events.map(e => e.data), history.gap], [[3, 4], true])
    t.same((await poll(origin, { room: old })).body.gap, ['room'], 'the poll agrees')
    t.equal((await app.comet.history('room', { after: history.next })).gap, false)
  })

  t.test(`${name}: bad arguments to position and history are coded errors`, async t => {
    const { app } = await makeServer(t, 100)
    await t.rejects(app.comet.position('a b'), { statusCode: 400, code: 'FST_COMET_INVALID_CHANNEL' })
    await t.rejects(app.comet.position(undefined as unknown as string), { code: 'FST_COMET_INVALID_CHANNEL' })
    await t.rejects(app.comet.history('x'.repeat(129)), { statusCode: 400, code: 'FST_COMET_INVALID_CHANNEL' })
    await t.rejects(app.comet.history(undefined as unknown as string), { code: 'FST_COMET_INVALID_CHANNEL', message: /channel name undefined;/ })
    for (const limit of [0, -1, 1.5, NaN, Infinity, '3', () => 3]) {
      await t.rejects(app.comet.history('room', { limit: limit as number }), { statusCode: 400, code: 'FST_COMET_INVALID_LIMIT', message: /^fastify-comet: history limit must be a positive integer/ }, `limit ${String(limit)}`)
    }
    for (const after of ['garbage', '', 'all', 7, null]) {
      await t.rejects(app.comet.history('room', { after: after as string }), { statusCode: 400, code: 'FST_COMET_INVALID_CURSOR' }, `after ${JSON.stringify(after)}`)
    }
  })
}
