// A Redis that stops answering but keeps its connections open (SIGSTOP: a partition that leaves
// TCP up, a stopped process): the engine's heartbeat finds it within about two intervals, polls
// and publishes get 503 at once meanwhile, and when it answers again (SIGCONT) all heals as after a
// reconnection. On one Redis, and on one master of a sharded Cluster.
import t, { type Test } from 'tap'
import { RedisEngine } from '../lib/engines/redis/index.js'
import { eventually, poll, publish, serve, within, type Served } from './helpers.js'
import { channelsIn, startCluster } from './redis-cluster-server.js'
import { startRedis } from './redis-server.js'

async function serveOn (t: Test, redis: ConstructorParameters<typeof RedisEngine>[0]['redis'], keyPrefix: string): Promise<Served & { engine: RedisEngine }> {
  const engine = new RedisEngine({ redis, keyPrefix, heartbeatInterval: 0.5 })
  t.teardown(() => engine.close())
  const served = await serve(t, { engine, tries: 1, sleep: 20 })
  await eventually(() => engine.health().connected, 5000)
  return { ...served, engine }
}

/** Milliseconds from now until `condition` holds. */
async function timeUntil (condition: () => boolean, timeoutMs: number): Promise<number> {
  const started = Date.now()
  await eventually(condition, timeoutMs)
  return Date.now() - started
}

t.test('one Redis stopped: found by the heartbeat, 503 at once meanwhile, and healed when it answers again', async t => {
  const redis = await startRedis(t)
  const a = await serveOn(t, redis.url, 'p:')
  const b = await serveOn(t, redis.url, 'p:')
  const first = await publish(a.origin, 'room', 'first')
  const waiting = poll(b.origin, { room: first.body.id }, { signal: AbortSignal.timeout(20_000) })
  await eventually(() => b.app.comet.stats().pending === 1)

  redis.suspend()
  // A publish sent now waits on the stopped Redis: the heartbeat ends the wait.
  const stuckPublish = publish(a.origin, 'room', 'sent to a stopped Redis')
  const detectedMs = await timeUntil(() => !a.engine.health().connected && !b.engine.health().connected, 3000)
  t.same([(await within(stuckPublish, 2000, 'the publish under way')).status], [503], 'the publish under way gets a 503')
  const started = Date.now()
  const refusedPoll = await within(poll(b.origin, { room: first.body.id }), 1000, 'a poll while stopped')
  const refusedPublish = await within(publish(a.origin, 'room', 'while stopped'), 1000, 'a publish while stopped')
  const refusedMs = Date.now() - started
  t.same([refusedPoll.status, refusedPoll.headers.get('retry-after'), refusedPublish.status, refusedPublish.body.code], [503, '1', 503, 'FST_COMET_ENGINE_UNAVAILABLE'])
  t.match(refusedPublish.body.message, /does not answer/)
  t.comment(`stopped Redis found in ${detectedMs} ms (heartbeat every 500 ms); a poll and a publish refused in ${refusedMs} ms`)

  redis.resume()
  await eventually(() => a.engine.health().connected && b.engine.health().connected, 5000)
  const after = await publish(a.origin, 'room', 'after')
  t.equal(after.status, 200, 'publishes work again')
  const woken = await within(waiting, 5000, 'the poll that waited through the stop')
  t.equal(woken.status, 200)
  // The publish sent to the stopped Redis ran when it resumed (its 503 meant "maybe"): the poll
  // sees it, then 'after', each once.
  const data = woken.body.m?.room?.map(e => e.data) ?? []
  if (!data.includes('after')) {
    const next = await within(poll(b.origin, { room: woken.body.p.room as string }), 5000, 'the next poll')
    data.push(...next.body.m?.room?.map(e => e.data) ?? [])
  }
  t.same(data.filter(d => d === 'after'), ['after'], `every event once, in order: ${JSON.stringify(data)}`)
  t.equal(woken.body.gap, undefined, 'Redis lost nothing: no gap')
})

t.test('one Cluster master stopped: its shard gets 503 at once, the others serve, and it heals when it answers again', async t => {
  // A node timeout far above the stop: no failover, the same master comes back.
  const cluster = await startCluster(t, { nodeTimeoutMs: 20_000 })
  const a = await serveOn(t, cluster.client(), 'c:')
  const b = await serveOn(t, cluster.client(), 'c:')
  const masters = await cluster.masters()
  const [[stopped], [elsewhere]] = channelsIn(masters.map(m => m.slots), 1, 'part') as [[string], [string]]
  const cursors = { [stopped]: (await publish(a.origin, stopped, 'first')).body.id, [elsewhere]: (await publish(a.origin, elsewhere, 'first')).body.id }
  const waiting = poll(b.origin, { [stopped]: cursors[stopped] as string }, { signal: AbortSignal.timeout(20_000) })
  await eventually(() => b.app.comet.stats().pending === 1)

  const node = cluster.nodes.find(n => n.port === masters[0]?.port)
  node?.suspend()
  const detectedMs = await timeUntil(() => !a.engine.health().connected && !b.engine.health().connected, 3000)
  const started = Date.now()
  const refusedPoll = await within(poll(b.origin, { [stopped]: cursors[stopped] as string }), 1000, 'a poll on the stopped shard')
  const refusedPublish = await within(publish(a.origin, stopped, 'while stopped'), 1000, 'a publish on the stopped shard')
  const refusedMs = Date.now() - started
  t.same([refusedPoll.status, refusedPoll.headers.get('retry-after'), refusedPublish.status], [503, '1', 503])
  const served = await within(publish(a.origin, elsewhere, 'meanwhile'), 1000, 'a publish on another shard')
  t.equal(served.status, 200, 'another shard takes publishes')
  const other = await within(poll(b.origin, { [elsewhere]: cursors[elsewhere] as string }), 1000, 'a poll on another shard')
  t.same(other.body.m?.[elsewhere]?.map(e => e.data), ['meanwhile'], 'and polls')
  t.comment(`stopped master found in ${detectedMs} ms (heartbeat every 500 ms); a poll and a publish on its shard refused in ${refusedMs} ms`)

  node?.resume()
  await eventually(() => a.engine.health().connected && b.engine.health().connected, 8000)
  const after = await within(publish(a.origin, stopped, 'after'), 3000, 'a publish after the resume')
  t.equal(after.status, 200)
  const woken = await within(waiting, 5000, 'the poll that waited through the stop')
  t.same([woken.status, woken.body.gap], [200, undefined])
  t.ok(woken.body.m?.[stopped]?.some(e => e.data === 'after') === true || woken.body.p[stopped] !== cursors[stopped], 'woken by what came after')
})
