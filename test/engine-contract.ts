// What every engine must do, written once and run against each engine (as mqemitter's
// abstractTest is reused by mqemitter-redis). test/memory-engine.test.ts runs it for MemoryEngine,
// test/redis-engine.test.ts for RedisEngine. Notifications may come after publish() resolves (from
// Redis, they come on another connection), so the tests wait for them, within a deadline.
import type { Test } from 'tap'
import { fromNow, fromOldest, type ChannelWatcher, type CometEngine } from '../plugin.js'
import { eventually } from './helpers.js'

export function engineContract (t: Test, name: string, makeEngine: (options: { historySize: number }) => CometEngine): void {
  async function withEngine (t: Test, historySize = 100): Promise<CometEngine> {
    const engine = makeEngine({ historySize })
    t.teardown(() => engine.close())
    return engine
  }

  function idempotent (engine: CometEngine): NonNullable<CometEngine['publishIdempotent']> {
    const publishIdempotent = engine.publishIdempotent
    if (publishIdempotent === undefined) throw new Error(`${name} has no publishIdempotent`)
    return publishIdempotent.bind(engine)
  }

  function recorder (): ChannelWatcher & { seen: string[] } {
    const seen: string[] = []
    return { seen, notify: channel => { seen.push(channel) } }
  }

  t.test(`${name}: event ids are distinct URL-safe cursors of at most 64 characters`, async t => {
    const engine = await withEngine(t)
    const ids = [await engine.publish('a', '1'), await engine.publish('a', '2'), await engine.publish('b', '3')]
    for (const id of ids) t.match(id, /^[A-Za-z0-9_.~-]{1,64}$/)
    t.equal(new Set(ids).size, 3)
  })

  t.test(`${name}: reading after an event's id gives exactly the events published after it, oldest first`, async t => {
    const engine = await withEngine(t)
    const ids: string[] = []
    for (const n of [1, 2, 3, 4]) ids.push(await engine.publish('room', String(n)))
    await engine.publish('other', '"elsewhere"')
    for (const [i, id] of ids.entries()) {
      const backlog = await engine.read('room', id, 100)
      t.same(backlog.events.map(e => e.json), ['1', '2', '3', '4'].slice(i + 1), `after event ${i + 1}`)
      t.same(backlog.events.map(e => e.id), ids.slice(i + 1))
      t.equal(backlog.gap, false)
      if (backlog.events.length > 0) t.equal(backlog.next, ids[3], 'next is the newest event id')
    }
    const caughtUp = await engine.read('room', ids[3] as string, 100)
    const id = await engine.publish('room', '5')
    t.same((await engine.read('room', caughtUp.next, 100)).events.map(e => e.id), [id], 'a caught-up cursor sees the next event')
  })

  t.test(`${name}: reading from now finds nothing, and its cursor sees every later event`, async t => {
    const engine = await withEngine(t)
    await engine.publish('room', '"before"')
    const now = await engine.read('room', fromNow, 100)
    t.same(now.events, [])
    t.equal(now.gap, false)
    t.same((await engine.read('room', now.next, 100)).events, [], 'nothing after now yet')
    const id = await engine.publish('room', '"after"')
    const later = await engine.read('room', now.next, 100)
    t.same(later.events.map(e => ({ id: e.id, json: e.json })), [{ id, json: '"after"' }], 'the later event')
    const empty = await engine.read('never-used', fromNow, 100)
    t.same(empty.events, [])
    t.equal(engine.channelCount(), 1, 'reading does not create channels')
  })

  t.test(`${name}: reading from the oldest gives what is held, at most the limit, and the cursor to continue`, async t => {
    const engine = await withEngine(t, 3)
    for (const n of [1, 2, 3, 4, 5]) await engine.publish('room', String(n))
    const first = await engine.read('room', fromOldest, 2)
    t.same(first.events.map(e => e.json), ['3', '4'])
    t.equal(first.gap, false)
    t.equal(first.next, first.events[1]?.id)
    const rest = await engine.read('room', first.next, 2)
    t.same(rest.events.map(e => e.json), ['5'])
    const none = await engine.read('nothing-here', fromOldest, 2)
    t.same(none.events, [])
    t.same((await engine.read('nothing-here', none.next, 2)).events, [])
  })

  t.test(`${name}: a cursor older than the history reports a gap with what is held`, async t => {
    const engine = await withEngine(t, 2)
    const old = await engine.publish('room', '1')
    for (const n of [2, 3, 4]) await engine.publish('room', String(n))
    const backlog = await engine.read('room', old, 100)
    t.equal(backlog.gap, true)
    t.same(backlog.events.map(e => e.json), ['3', '4'])
    const current = await engine.read('room', backlog.next, 100)
    t.equal(current.gap, false, 'the next cursor is past the loss')
  })

  t.test(`${name}: a malformed cursor is an error with status 400`, async t => {
    const engine = await withEngine(t)
    await t.rejects(async () => engine.read('room', 'garbage', 10), { statusCode: 400, code: 'FST_COMET_INVALID_CURSOR' })
  })

  t.test(`${name}: watchers are notified of publishes on the channels they watch, until they unwatch`, async t => {
    const engine = await withEngine(t)
    const one = recorder()
    const two = recorder()
    await engine.watch('a', one)
    await engine.watch('b', one)
    await engine.watch('a', two)
    await engine.publish('a', '1')
    await engine.publish('b', '2')
    await engine.publish('c', '3')
    await eventually(() => one.seen.length === 2 && two.seen.length === 1)
    engine.unwatch('a', one)
    await engine.publish('a', '4')
    await eventually(() => two.seen.length === 2)
    t.same(one.seen.sort(), ['a', 'b'])
    t.same(two.seen, ['a', 'a'])
    const channels = engine.channelCount()
    engine.unwatch('nothing', one)
    t.equal(engine.channelCount(), channels, 'unwatching a channel never watched is harmless: it creates nothing')
  })

  t.test(`${name}: a watcher that unwatches while notified does not make others miss the event`, async t => {
    const engine = await withEngine(t)
    const others = [recorder(), recorder(), recorder()]
    const leaving: ChannelWatcher = { notify: channel => engine.unwatch(channel, leaving) }
    await engine.watch('room', leaving)
    for (const other of others) await engine.watch('room', other)
    await engine.publish('room', '1')
    await eventually(() => others.every(o => o.seen.length > 0))
    t.same(others.map(o => o.seen), [['room'], ['room'], ['room']])
  })

  t.test(`${name}: a publish repeating an idempotency key stores nothing, tells no watcher, and answers the first id`, async t => {
    const engine = await withEngine(t)
    const publishIdempotent = idempotent(engine)
    const watcher = recorder()
    await engine.watch('room', watcher)
    const first = await publishIdempotent('room', '{"text":"hi"}', 'key-1')
    t.same(first, { id: first.id, replayed: false })
    await eventually(() => watcher.seen.length === 1)
    const again = await publishIdempotent('room', '{"text":"hi"}', 'key-1')
    t.same(again, { id: first.id, replayed: true })
    const other = await publishIdempotent('room', '{"text":"hi"}', 'key-2')
    t.equal(other.replayed, false, 'another key is another event')
    const plain = await engine.publish('room', '{"text":"hi"}')
    t.same((await engine.read('room', fromOldest, 10)).events.map(e => e.id), [first.id, other.id, plain], 'the repeat stored nothing')
    await eventually(() => watcher.seen.length === 3)
    t.same(watcher.seen, ['room', 'room', 'room'], 'and woke no one')
  })

  t.test(`${name}: an idempotency key is scoped to its channel`, async t => {
    const engine = await withEngine(t)
    const publishIdempotent = idempotent(engine)
    const a = await publishIdempotent('a', '1', 'shared-key')
    const b = await publishIdempotent('b', '1', 'shared-key')
    t.same([a.replayed, b.replayed], [false, false])
    t.same((await engine.read('b', fromOldest, 10)).events.map(e => e.id), [b.id])
  })

  t.test(`${name}: an idempotency key repeated with other data is refused with 422, and stores nothing`, async t => {
    const engine = await withEngine(t)
    const publishIdempotent = idempotent(engine)
    const first = await publishIdempotent('room', '1', 'key')
    await t.rejects(publishIdempotent('room', '2', 'key'), { statusCode: 422, code: 'FST_COMET_IDEMPOTENCY_KEY_REUSED', message: /key "key" was used on channel "room" for different data/ })
    t.same((await engine.read('room', fromOldest, 10)).events.map(e => e.id), [first.id])
    t.same(await publishIdempotent('room', '1', 'key'), { id: first.id, replayed: true }, 'the first data is still a replay')
  })

  t.test(`${name}: publishes racing with one idempotency key store one event`, async t => {
    const engine = await withEngine(t)
    const publishIdempotent = idempotent(engine)
    const results = await Promise.all(Array.from({ length: 8 }, async () => publishIdempotent('room', '"once"', 'racing-key')))
    t.equal(new Set(results.map(r => r.id)).size, 1, 'one id for all')
    t.equal(results.filter(r => !r.replayed).length, 1, 'one of them stored it')
    t.equal((await engine.read('room', fromOldest, 10)).events.length, 1)
  })

  t.test(`${name}: channelCount counts channels with watchers or events`, async t => {
    const engine = await withEngine(t)
    const watcher = recorder()
    t.equal(engine.channelCount(), 0)
    await engine.watch('watched', watcher)
    await engine.publish('published', '1')
    t.equal(engine.channelCount(), 2)
    engine.unwatch('watched', watcher)
    t.equal(engine.channelCount(), 1, 'a channel with neither is dropped when its last watcher goes')
  })
}
