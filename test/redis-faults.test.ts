// Redis failing under a running server: shut down mid-poll, back again, restarted from an older
// snapshot, its subscription connection killed. Each time: 503s within a second, never a hang or
// a crash, recovery with no action, and a gap wherever events may have been lost.
import t from 'tap'
import { eventually, poll, publish } from './helpers.js'
import { serveOnRedis, startRedis, type RedisServer } from './redis-server.js'

/** Far above anything these tests wait for: a reply that comes is never a timeout's. */
const longPoll = { tries: 1, sleep: 20 }

t.test('Redis shut down mid-poll: 503 with Retry-After at once, waiting polls keep their cursors, and all recovers by itself', async t => {
  const redis = await startRedis(t)
  const { app, origin, engine } = await serveOnRedis(t, redis, { tries: 1, sleep: 1.5 })
  const first = await publish(origin, 'room', 'before')
  t.equal(first.status, 200)
  const waiting = poll(origin, { room: first.body.id })
  await eventually(() => app.comet.stats().pending === 1)

  await redis.shutdown()
  await eventually(() => !engine.health().connected)
  const started = Date.now()
  const refusedPoll = await poll(origin, { room: first.body.id })
  const refusedPublish = await publish(origin, 'room', 'while down')
  const elapsed = Date.now() - started
  t.same([refusedPoll.status, (refusedPoll.body as unknown as { code: string }).code, refusedPoll.headers.get('retry-after')], [503, 'FST_COMET_ENGINE_UNAVAILABLE', '1'])
  t.same([refusedPublish.status, refusedPublish.body.code], [503, 'FST_COMET_ENGINE_UNAVAILABLE'])
  t.match(refusedPublish.body.message, /^fastify-comet: the engine cannot reach its store/)
  t.ok(elapsed < 1000, `both answered within a second (${elapsed} ms)`)
  await t.rejects(app.comet.publish('room', 'server side'), { code: 'FST_COMET_ENGINE_UNAVAILABLE', statusCode: 503 })

  const timedOut = await waiting
  t.same([timedOut.status, timedOut.body], [200, { s: 0, p: { room: first.body.id } }], 'the waiting poll times out with the cursor it had')

  await redis.start()
  await eventually(() => engine.health().connected, 5000)
  t.ok(engine.health().reconnections >= 1, 'it reconnected by itself')
  const fresh = await publish(origin, 'room', 'after')
  t.equal(fresh.status, 200, 'publishes work again')
  const old = await poll(origin, { room: first.body.id })
  t.same([old.status, old.body.gap, old.body.m?.room?.map(e => e.data)], [200, ['room'], ['after']],
    `a cursor from before the restart gets a gap: Redis kept nothing, and a new epoch began (${JSON.stringify(old.body)})`)
})

t.test('a poll waiting through an outage is woken by a publish once Redis is back', async t => {
  const redis = await startRedis(t)
  const a = await serveOnRedis(t, redis, longPoll)
  const b = await serveOnRedis(t, redis, longPoll)
  const { body: { id } } = await publish(a.origin, 'room', 'first')
  const waiting = poll(b.origin, { room: id }, { signal: AbortSignal.timeout(10_000) })
  await eventually(() => b.app.comet.stats().pending === 1)
  await redis.shutdown()
  await eventually(() => !a.engine.health().connected && !b.engine.health().connected)
  await redis.start()
  await eventually(() => a.engine.health().connected, 5000)
  // B may not have resubscribed yet: the publish reaches its poll by the notification or by the heal.
  const second = await publish(a.origin, 'room', 'second')
  t.equal(second.status, 200)
  const woken = await waiting
  t.equal(woken.status, 200)
  t.same(woken.body.gap, ['room'], 'Redis lost the channel: the poll learns of it with a gap, by the heal or by the publish')
  const received = woken.body.m?.room?.map(e => e.data) ?? []
  if (received.length === 0) {
    // The heal woke it before the publish: the next poll has the event.
    const next = await poll(b.origin, { room: woken.body.p.room as string }, { signal: AbortSignal.timeout(5000) })
    received.push(...next.body.m?.room?.map(e => e.data) ?? [])
  }
  t.same(received, ['second'])
})

t.test('Redis restarted from an older snapshot: a gap, never a silent skip', async t => {
  const redis = await startRedis(t)
  const { origin } = await serveOnRedis(t, redis, longPoll)
  const admin = redis.admin()
  const ids: string[] = []
  for (const n of [1, 2, 3]) ids.push((await publish(origin, 'room', n)).body.id)
  await admin.save()
  for (const n of [4, 5]) ids.push((await publish(origin, 'room', n)).body.id)
  await redis.shutdown()
  await redis.start()
  await eventually(async () => (await publish(origin, 'warm-up', 0)).status === 200, 5000)

  // Redis holds events 1 to 3 again. A client that had seen event 5 must not wait silently at an
  // offset Redis will reuse, and one at event 3 has missed 4 and 5.
  const atFive = await poll(origin, { room: ids[4] as string }, { signal: AbortSignal.timeout(5000) })
  t.same(atFive.body.gap, ['room'], 'the client that saw event 5 gets a gap at once')
  const six = await publish(origin, 'room', 6)
  t.not(six.body.id, ids[3], 'a new event never takes the id of a lost one')
  const atThree = await poll(origin, { room: ids[2] as string }, { signal: AbortSignal.timeout(5000) })
  t.same([atThree.body.gap, atThree.body.m?.room?.map(e => e.data)], [['room'], [6]], 'the client at event 3 gets a gap and what came after the restart')
})

t.test('the subscription connection killed: a publish right after still reaches a waiting poll', async t => {
  const redis = await startRedis(t)
  const a = await serveOnRedis(t, redis, longPoll)
  const b = await serveOnRedis(t, redis, longPoll)
  const admin = redis.admin()
  const { body: { id } } = await publish(a.origin, 'room', 'first')
  const waiting = poll(b.origin, { room: id }, { signal: AbortSignal.timeout(10_000) })
  await eventually(() => b.app.comet.stats().pending === 1)

  await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub')
  const second = await publish(a.origin, 'room', 'second')
  const woken = await waiting
  t.same([woken.status, woken.body.gap, woken.body.m?.room], [200, undefined, [{ id: second.body.id, data: 'second' }]],
    'answered long before its 20 s timeout, with no gap: Redis lost nothing')
  await eventually(() => b.engine.health().reconnections === 1)
  t.ok(b.engine.health().healedNotifications <= 1, 'at most the one poll was woken by the heal')
})

t.test('a subscribe refused while Redis was down does not stay refused once it is back (regression)', async t => {
  const redis = await startRedis(t)
  const { app, origin, engine } = await serveOnRedis(t, redis, longPoll)
  const { body: { id } } = await publish(origin, 'lobby', 'first')
  // This poll keeps the channel's subscription alive through the outage.
  const waiting = poll(origin, { lobby: id }, { signal: AbortSignal.timeout(10_000) })
  await eventually(() => app.comet.stats().pending === 1)
  await redis.shutdown()
  await eventually(() => !engine.health().connected)
  t.equal((await poll(origin, { lobby: id })).status, 503)
  await redis.start()
  await eventually(() => engine.health().connected, 5000)
  // At once, while the subscription is still kept for the poll that waited (the heal answers it).
  const now = await fetch(`${origin}/comet/subscribe?subscribed[lobby]=0&wait=0`)
  t.equal(now.status, 200, 'the channel subscribes again')
  t.same((await waiting).body.gap, ['lobby'], 'the poll that waited learns that Redis lost the channel')
})
