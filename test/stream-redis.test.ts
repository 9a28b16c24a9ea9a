// Streams on the Redis engine: a stream on one server gets what another publishes, a new stream
// gets 503 while Redis is down, and a stream open through an outage stays open and delivers what
// comes after, with a gap where Redis lost events: never a silent loss.
import t, { type Test } from 'tap'
import { eventually, publish } from './helpers.js'
import { serveOnRedis, startRedis, type RedisServer } from './redis-server.js'
import { openStream, type OpenedStream } from './sse-client.js'

async function streamOf (t: Test, origin: string, cursors: Record<string, string>, lastEventId?: string): Promise<OpenedStream> {
  const stream = await openStream(origin, cursors, lastEventId === undefined ? {} : { lastEventId })
  t.teardown(() => { stream.close() })
  return stream
}

t.test('a stream on one server gets the events published on another, in order, and resumes with Last-Event-ID on either', async t => {
  const redis = await startRedis(t)
  const a = await serveOnRedis(t, redis)
  const b = await serveOnRedis(t, redis)
  const stream = await streamOf(t, b.origin, { room: '0', other: '0' })
  await stream.until(p => p.messages.length === 1)
  for (const n of [1, 2, 3]) t.equal((await publish(a.origin, 'room', n)).status, 200)
  await stream.until(p => p.messages.length === 4)
  t.same(stream.events().map(e => e.data), [1, 2, 3])
  const afterTwo = stream.parser.messages[2]?.id as string
  stream.close()
  const resumed = await streamOf(t, a.origin, { room: '0', other: '0' }, afterTwo)
  await resumed.until(p => p.messages.length === 2)
  t.same(resumed.events().map(e => e.data), [3])
})

t.test('Redis down: a new stream gets 503 with Retry-After; an open one stays open, and after the outage delivers with a gap', async t => {
  const redis = await startRedis(t)
  const { app, origin, engine } = await serveOnRedis(t, redis, { heartbeat: 0.05 })
  const { body: { id } } = await publish(origin, 'room', 'before')
  const open = await streamOf(t, origin, { room: id })
  await open.until(p => p.messages.length === 1)

  await redis.shutdown()
  await eventually(() => !engine.health().connected)
  const refused = await openStream(origin, { room: id })
  t.equal(refused.status, 503)
  t.equal(refused.headers['retry-after'], '1')
  t.equal((await refused.body()).code, 'FST_COMET_ENGINE_UNAVAILABLE')
  // Heartbeats go on through the outage: the stream is kept, with its cursors.
  const beats = open.parser.comments.length
  await open.until(p => p.comments.length > beats + 2)

  await redis.start()
  await eventually(() => engine.health().connected, 5000)
  t.equal((await publish(origin, 'room', 'after')).status, 200)
  await open.until(p => p.messages.some(m => m.data !== '' && m.event === 'message'))
  t.same(open.gaps(), [['room']], 'Redis lost the channel: the stream says so')
  t.same(open.events().map(e => e.data), ['after'])
  t.equal(app.comet.stats().streams.open, 1, 'the same stream, never ended')
})
