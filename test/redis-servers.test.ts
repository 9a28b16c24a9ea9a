// Several Fastify servers on one Redis, as several processes behind a load balancer: a publish on
// one wakes the polls on the others at once, and the plugin's limits and lifecycle behave as they
// do on the memory engine.
import t, { type Test } from 'tap'
import { RedisEngine } from '../lib/engines/redis/index.js'
import type { CometOptions } from '../plugin.js'
import { eventually, poll, publish, serve, type Served } from './helpers.js'
import { startRedis } from './redis-server.js'

const redis = await startRedis(t)
let servers = 0

/** Far above anything these tests wait for: a reply that comes is never a timeout's. */
const longPoll = { tries: 1, sleep: 20 }

async function serveOnRedis (t: Test, options: CometOptions = {}, keyPrefix = `servers${servers++}:`): Promise<Served & { engine: RedisEngine }> {
  const engine = new RedisEngine({ redis: redis.url, keyPrefix })
  t.teardown(() => engine.close())
  return { ...await serve(t, { engine, ...options }), engine }
}

t.test('a poll on server B is woken at once by a publish on server A', async t => {
  const a = await serveOnRedis(t, longPoll, 'shared-1:')
  const b = await serveOnRedis(t, longPoll, 'shared-1:')
  const waiting = poll(b.origin, { room: '0' }, { signal: AbortSignal.timeout(10_000) })
  await eventually(() => b.app.comet.stats().pending === 1)
  const { body: { id } } = await publish(a.origin, 'room', { from: 'A' })
  const { status, body } = await waiting
  t.same([status, body.m], [200, { room: [{ id, data: { from: 'A' } }] }], 'answered long before the 20 s timeout')
  // B holds no state of the channel once its poll left: the history is in Redis.
  t.has(b.app.comet.stats(), { channels: 0, pending: 0, published: 0, delivered: 1 })
  t.has(a.app.comet.stats(), { channels: 1, pending: 0, published: 1, delivered: 0 })

  const atOnce = await fetch(`${a.origin}/comet/subscribe?subscribed[room]=${id}&wait=0`)
  t.same(await atOnce.json(), { s: 0, p: { room: id } }, 'the cursor B gave is as good on A: nothing new, no gap')
})

t.test('maxPending, batchSize and close behave as on the memory engine', async t => {
  const { app, origin } = await serveOnRedis(t, { ...longPoll, maxPending: 1, batchSize: 2 })
  for (const n of [1, 2, 3]) await app.comet.publish('room', n)
  const first = await poll(origin, { room: 'all' })
  t.same(first.body.m?.room?.map(e => e.data), [1, 2], 'batchSize events at a time')
  const rest = await poll(origin, { room: first.body.p.room as string })
  t.same(rest.body.m?.room?.map(e => e.data), [3])

  const waiting = poll(origin, { room: rest.body.p.room as string })
  await eventually(() => app.comet.stats().pending === 1)
  const refused = await poll(origin, { lobby: '0' })
  t.same([refused.status, refused.headers.get('retry-after')], [503, '20'], 'past maxPending, 503 with Retry-After')

  await app.close()
  const answered = await waiting
  t.same([answered.status, answered.body], [200, { s: 0, p: { room: rest.body.p.room } }], 'close answers the waiting poll at once with its cursor')
})

/** Servers A and B on one Redis and key prefix, and B's cursor of "room" at now. */
async function twoServersAtNow (t: Test, keyPrefix: string): Promise<{ a: Served, b: Served, cursor: string }> {
  const a = await serveOnRedis(t, longPoll, keyPrefix)
  const b = await serveOnRedis(t, longPoll, keyPrefix)
  const now = await (await fetch(`${b.origin}/comet/subscribe?subscribed[room]=0&wait=0`)).json() as { p: { room: string } }
  return { a, b, cursor: now.p.room }
}

t.test('a fan-out costs Redis one script, the publish: the woken polls are answered from the notification', async t => {
  const admin = redis.admin()
  const { a, b, cursor } = await twoServersAtNow(t, 'fanout:')
  const polls = Array.from({ length: 20 }, () => poll(b.origin, { room: cursor }, { signal: AbortSignal.timeout(10_000) }))
  await eventually(() => b.app.comet.stats().pending === 20)
  await admin.config('RESETSTAT')
  const { body: { id } } = await publish(a.origin, 'room', 'to all')
  const replies = await Promise.all(polls)
  t.ok(replies.every(r => r.body.m?.room?.[0]?.id === id), 'every poll has the event')
  const scripts = /cmdstat_evalsha:calls=(\d+)/.exec(await admin.info('commandstats'))?.[1]
  t.equal(scripts, '1', 'one script in all: the publish')
})

t.test('polls that come back after the subscription was dropped share one read: the cost does not depend on how long a fan-out took', async t => {
  const admin = redis.admin()
  const { a, b, cursor } = await twoServersAtNow(t, 'comeback:')
  // Longer than the second B keeps a channel's subscription after its last poll left: the polls
  // come back as they would after a fan-out slower than that, to no subscription and no notification.
  await new Promise(resolve => setTimeout(resolve, 1200))
  await admin.config('RESETSTAT')
  const signal = AbortSignal.timeout(10_000)
  const together = Array.from({ length: 10 }, () => poll(b.origin, { room: cursor }, { signal }))
  await eventually(() => b.app.comet.stats().pending === 10)
  const later = Array.from({ length: 10 }, () => poll(b.origin, { room: cursor }, { signal }))
  await eventually(() => b.app.comet.stats().pending === 20)
  const { body: { id } } = await publish(a.origin, 'room', 'to all')
  const replies = await Promise.all([...together, ...later])
  t.ok(replies.every(r => r.body.m?.room?.[0]?.id === id), 'every poll has the event')
  const stats = await admin.info('commandstats')
  const [evalsha = 0, evalCalls = 0] = ['evalsha', 'eval'].map(name => Number(new RegExp(`cmdstat_${name}:calls=(\\d+)`).exec(stats)?.[1] ?? 0))
  t.equal(evalsha + evalCalls, 2, `two scripts in all, however many polls came back: one read and the publish (${stats.split('\n').filter(l => l.startsWith('cmdstat_e')).join(', ')})`)
})
