// The Redis engine across a Redis crash and restart, for what was under way at the crash: a
// subscribe sent and never answered must not leave its channel (or the heal) waiting forever.
import t from 'tap'
import { RedisEngine } from '../lib/engines/redis/index.js'
import { eventually, within } from './helpers.js'
import { startRedis } from './redis-server.js'

t.test('a subscribe under way when Redis crashes fails with a 503 and does not hang its channel', async t => {
  const redis = await startRedis(t)
  const engine = new RedisEngine({ redis: redis.url })
  t.teardown(() => engine.close())
  const publisher = new RedisEngine({ redis: redis.url })
  t.teardown(() => publisher.close())
  const notified: string[] = []
  const watcher = { notify: (channel: string) => { notified.push(channel) } }
  await engine.watch('warm', watcher)
  await eventually(() => engine.health().connected && publisher.health().connected)

  // The SSUBSCRIBE is written to a Redis that does not answer, and then Redis dies.
  redis.suspend()
  const watching = Promise.resolve(engine.watch('room', watcher))
  // Caught at once: whatever it settles to is checked below.
  watching.catch(() => {})
  await new Promise(resolve => setTimeout(resolve, 50))
  await redis.crash()
  await t.rejects(within(watching, 2000, 'the subscribe under way'), { code: 'FST_COMET_ENGINE_UNAVAILABLE' }, 'the subscribe under way fails')
  engine.unwatch('room', watcher)

  await redis.start()
  await eventually(() => engine.health().connected && publisher.health().connected, 5000)
  await within(Promise.resolve(engine.watch('room', watcher)), 2000, 'a subscribe after the restart')
  t.ok(await within(Promise.resolve(engine.read('room', 'AAAAAAAAAAAA.0', 10)), 2000, 'a read after the restart'), 'the channel reads after the restart')
  await publisher.publish('room', '"after"')
  await eventually(() => notified.includes('room'))
  // The heal after the reconnection completed: it does not wait on the lost subscribe either.
  t.equal(engine.health().reconnections, 1)
})
