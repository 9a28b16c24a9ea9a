// Idempotency keys on one Redis shared by several engines (as by several processes): publishes
// racing with one key store one event whichever engine they reach, the window is Redis's expiry
// of the key's record, and servers on one Redis answer each other's repeats.
import t, { type Test } from 'tap'
import { fromOldest } from '../plugin.js'
import { RedisEngine, type RedisEngineOptions } from '../lib/engines/redis/index.js'
import { serve, sleep } from './helpers.js'
import { startRedis } from './redis-server.js'

const redis = await startRedis(t)
let runs = 0

/** Engines on the one Redis, with their own connections, sharing a fresh key prefix. */
function enginesFor (t: Test, count: number, options: Partial<RedisEngineOptions> = {}): RedisEngine[] {
  const keyPrefix = `idem${runs++}:`
  return Array.from({ length: count }, () => {
    const engine = new RedisEngine({ redis: redis.url, keyPrefix, ...options })
    t.teardown(() => engine.close())
    return engine
  })
}

t.test('publishes racing with one key from two engines on one Redis store one event, for every key', async t => {
  const [a, b] = enginesFor(t, 2) as [RedisEngine, RedisEngine]
  const keys = Array.from({ length: 40 }, (_, i) => `race-${i}`)
  const outcomes = await Promise.all(keys.map(async key => {
    const json = JSON.stringify({ key })
    return await Promise.all([a.publishIdempotent('room', json, key), b.publishIdempotent('room', json, key), a.publishIdempotent('room', json, key)])
  }))
  for (const [i, results] of outcomes.entries()) {
    if (new Set(results.map(r => r.id)).size !== 1 || results.filter(r => !r.replayed).length !== 1) {
      t.fail(`key ${i}: ${JSON.stringify(results)}`)
    }
  }
  const held = await a.read('room', fromOldest, 1000)
  t.equal(held.events.length, keys.length, 'one event per key')
  t.same(held.events.map(e => JSON.parse(e.json).key).sort(), [...keys].sort())
})

t.test('a key used on one engine with other data is refused on another with 422', async t => {
  const [a, b] = enginesFor(t, 2) as [RedisEngine, RedisEngine]
  await a.publishIdempotent('room', '1', 'k')
  await t.rejects(b.publishIdempotent('room', '2', 'k'), { statusCode: 422, code: 'FST_COMET_IDEMPOTENCY_KEY_REUSED' })
})

t.test('the key\'s record expires after idempotencyWindow: then the same key publishes a new event', async t => {
  const [engine] = enginesFor(t, 1, { idempotencyWindow: 0.2 }) as [RedisEngine]
  const first = await engine.publishIdempotent('room', '1', 'window-key')
  const admin = redis.admin()
  const records = (await admin.keys('*')).filter(key => key.endsWith(':i:window-key'))
  t.equal(records.length, 1, 'one record, under the channel\'s hash tag')
  const ttl = await admin.pttl(records[0] as string)
  t.ok(ttl > 0 && ttl <= 200, `it expires with the window (${ttl} ms)`)
  t.same(await engine.publishIdempotent('room', '1', 'window-key'), { id: first.id, replayed: true }, 'within the window')
  await sleep(250)
  const after = await engine.publishIdempotent('room', '1', 'window-key')
  t.same([after.replayed, after.id === first.id], [false, false], 'after it: a new event')
})

t.test('two servers on one Redis: a repeat sent to the other server is a replay, with Idempotent-Replayed', async t => {
  const engines = enginesFor(t, 2)
  const servers = await Promise.all(engines.map(async engine => await serve(t, { tries: 1, sleep: 0.05, engine })))
  const send = async (origin: string): Promise<Response> => await fetch(`${origin}/comet/publish/room`, { method: 'POST', headers: { 'content-type': 'application/json', 'idempotency-key': 'k' }, body: '"hi"' })
  const first = await send(servers[0]?.origin as string)
  const again = await send(servers[1]?.origin as string)
  t.same([first.status, first.headers.get('idempotent-replayed')], [200, null])
  t.same([again.status, again.headers.get('idempotent-replayed')], [200, 'true'])
  t.same(await again.json(), await first.json())
  t.same(await servers[1]?.app.comet.history('room').then(h => h.events.length), 1)
})
