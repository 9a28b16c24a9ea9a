// What stats() counts and what the diagnostics channels publish: answers by reason, hang-ups,
// gaps, errors by code, the publish-to-answer histogram, and an engine's health.
import diagnostics from 'node:diagnostics_channel'
import Fastify from 'fastify'
import t, { type Test } from 'tap'
import { CometBus } from '../lib/bus/bus.js'
import { CometMetrics } from '../lib/metrics.js'
import comet, { diagnosticsChannels, fromNow, MemoryEngine, type EngineHealth } from '../plugin.js'
import { counters, countersWith, eventually, poll, publish, serve } from './helpers.js'

/** A memory engine that reports the health of a connection, as an engine backed by Redis does. */
class ConnectedEngine extends MemoryEngine {
  state: EngineHealth = { connected: true, reconnections: 0, healedNotifications: 0 }
  health (): EngineHealth { return this.state }
}

/** Collects what one diagnostics channel publishes until the test ends. */
function listen (t: Test, name: string): unknown[] {
  const messages: unknown[] = []
  const listener = (message: unknown): void => { messages.push(message) }
  diagnostics.subscribe(name, listener)
  t.teardown(() => { diagnostics.unsubscribe(name, listener) })
  return messages
}

t.test('polls are counted by why they were answered: events, timeout, wait=0 and close', async t => {
  const { app, origin } = await serve(t, { tries: 1, sleep: 0.05 })
  const woken = poll(origin, { news: '0' })
  await eventually(() => app.comet.stats().pending === 1)
  await app.comet.publish('news', 'x')
  await woken
  await poll(origin, { quiet: '0' })
  const atOnce = await fetch(`${origin}/comet/subscribe?subscribed[quiet]=0&wait=0`)
  t.equal(atOnce.status, 200)
  await atOnce.arrayBuffer()
  const closing = poll(origin, { closing: '0' })
  await eventually(() => app.comet.stats().pending === 1)
  await app.close()
  t.equal((await closing).body.s, 0)
  t.same(counters(app.comet.stats()), countersWith({
    published: 1,
    delivered: 1,
    answered: { events: 1, timeout: 1, wait0: 1, close: 1, superseded: 0 }
  }))
})

t.test('hang-ups, gaps and error replies by code are counted', async t => {
  const other = new MemoryEngine()
  t.teardown(() => other.close())
  const foreign = await other.publish('room', '1')
  const { app, origin } = await serve(t, { maxPending: 1, authorizePublish: (_request, channel) => channel !== 'closed' })

  // A cursor from another engine (a restart): a gap on one channel of two.
  const gapped = await poll(origin, { room: foreign, lobby: '0' })
  t.same(gapped.body.gap, ['room'])

  const hangUp = new AbortController()
  const abandoned = poll(origin, { room: '0' }, { signal: hangUp.signal }).catch(() => 'aborted')
  await eventually(() => app.comet.stats().pending === 1)
  t.equal((await poll(origin, { other: '0' })).status, 503, 'maxPending')
  hangUp.abort()
  t.equal(await abandoned, 'aborted')
  await eventually(() => app.comet.stats().hangUps === 1)

  t.equal((await publish(origin, 'closed', 1)).status, 403)
  t.equal((await publish(origin, 'closed', 1)).status, 403)
  t.equal((await fetch(`${origin}/comet/subscribe?subscribed[no%20space]=0`)).status, 400)
  t.equal((await fetch(`${origin}/comet/subscribe?wait=2&subscribed[a]=0`)).status, 400)

  t.same(counters(app.comet.stats()), countersWith({
    answered: { events: 1, timeout: 0, wait0: 0, close: 0, superseded: 0 },
    hangUps: 1,
    gaps: 1,
    errors: { FST_COMET_TOO_MANY_PENDING: 1, FST_COMET_FORBIDDEN: 2, FST_COMET_INVALID_CHANNEL: 1, FST_ERR_VALIDATION: 1 }
  }))
})

t.test('an error with no code is counted under its status code', async t => {
  class FailingEngine extends MemoryEngine {
    override read (): never { throw new Error('engine down') }
  }
  const engine = new FailingEngine()
  t.teardown(() => engine.close())
  const { app, origin } = await serve(t, { engine })
  t.equal((await fetch(`${origin}/comet/subscribe?subscribed[a]=0`)).status, 500)
  t.same(app.comet.stats().errors, { 500: 1 })
})

t.test('the publish-to-answer histogram counts each poll a publish woke, in cumulative buckets', async t => {
  const { app, origin } = await serve(t)
  const waiting = [poll(origin, { a: '0' }), poll(origin, { a: '0' }), poll(origin, { a: '0', b: '0' })]
  await eventually(() => app.comet.stats().pending === 3)
  await app.comet.publish('a', 1)
  await Promise.all(waiting)
  // Polls answered at once (wait=0) are not in it: no publish woke them.
  await (await fetch(`${origin}/comet/subscribe?subscribed[a]=0&wait=0`)).arrayBuffer()

  const { buckets, count, sum } = app.comet.stats().publishToAnswerMs
  t.equal(count, 3)
  t.ok(sum >= 0 && Number.isFinite(sum), 'the sum is a duration in milliseconds')
  t.same(buckets.map(b => b.le), [0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, Infinity])
  t.equal(buckets.at(-1)?.count, 3, 'the last bucket holds every observation')
  t.ok(buckets.every((b, i) => i === 0 || b.count >= (buckets[i - 1]?.count ?? 0)), 'the counts are cumulative')
})

t.test('an engine that reports its health has it in stats(); the memory engine has none', async t => {
  const engine = new ConnectedEngine()
  t.teardown(() => engine.close())
  const { app } = await serve(t, { engine })
  t.same(app.comet.stats().engine, { connected: true, reconnections: 0, healedNotifications: 0 })
  engine.state = { connected: false, reconnections: 2, healedNotifications: 5 }
  t.same(app.comet.stats().engine, { connected: false, reconnections: 2, healedNotifications: 5 })

  const plain = Fastify()
  t.teardown(() => plain.close())
  await plain.register(comet)
  t.notOk('engine' in plain.comet.stats())
})

t.test('the diagnostics channels publish each publish, answer, hang-up and error', async t => {
  const published = listen(t, diagnosticsChannels.publish)
  const answers = listen(t, diagnosticsChannels.answer)
  const hangUps = listen(t, diagnosticsChannels.hangUp)
  const errors = listen(t, diagnosticsChannels.error)
  const { app, origin } = await serve(t, { authorizePublish: () => false })

  const woken = poll(origin, { a: '0', b: '0' })
  await eventually(() => app.comet.stats().pending === 1)
  const { id } = await app.comet.publish('a', 1)
  await woken
  t.same(published, [{ channel: 'a', id }])
  t.equal(answers.length, 1)
  t.match(answers[0], { channels: ['a', 'b'], reason: 'events', events: 1, gaps: 0, latencyMs: Number })

  const hangUp = new AbortController()
  const abandoned = poll(origin, { c: '0' }, { signal: hangUp.signal }).catch(() => 'aborted')
  await eventually(() => app.comet.stats().pending === 1)
  hangUp.abort()
  await abandoned
  await eventually(() => hangUps.length === 1)
  t.same(hangUps, [{ channels: ['c'] }])

  t.equal((await publish(origin, 'a', 1)).status, 403)
  t.equal(errors.length, 1)
  t.match(errors[0], { code: 'FST_COMET_FORBIDDEN', statusCode: 403, error: { message: /not allowed to publish/ } })

  await (await fetch(`${origin}/comet/subscribe?subscribed[d]=0&wait=0`)).arrayBuffer()
  t.match(answers[1], { channels: ['d'], reason: 'wait0', events: 0, gaps: 0, latencyMs: undefined })
})

t.test('with nobody subscribed, nothing is published on the channels', async t => {
  for (const name of Object.values(diagnosticsChannels)) t.equal(diagnostics.channel(name).hasSubscribers, false, name)
  const seen: unknown[] = []
  const listener = (message: unknown): void => { seen.push(message) }
  diagnostics.subscribe(diagnosticsChannels.publish, listener)
  diagnostics.unsubscribe(diagnosticsChannels.publish, listener)
  const { app } = await serve(t)
  await app.comet.publish('a', 1)
  t.same(seen, [], 'an unsubscribed listener gets nothing')
  t.equal(app.comet.stats().published, 1, 'the counters count all the same')
})

t.test('a poll that starts after close() is counted as answered for the close, even with wait=0', async t => {
  const engine = new MemoryEngine()
  t.teardown(() => engine.close())
  const bus = new CometBus(engine, { pollTimeoutMs: 30_000, maxPending: Infinity, batchSize: 100, maxPayload: 1000 })
  bus.close()
  await bus.poll(new Map([['a', fromNow]])).reply
  await bus.poll(new Map([['a', fromNow]]), { wait: false }).reply
  t.same(bus.stats().answered, { events: 0, timeout: 0, wait0: 0, close: 2, superseded: 0 })
})

t.test('each publish-to-answer time lands in the first bucket that holds it, the slowest in Infinity', async t => {
  const metrics = new CometMetrics()
  for (const latencyMs of [6000, 3000, 3000, 0]) metrics.onAnswer(['a'], 'events', 1, 0, latencyMs)
  const { buckets, count, sum } = metrics.stats(0, 0, undefined).publishToAnswerMs
  t.equal(count, 4)
  t.ok(sum >= 12_000, 'the sum of the times')
  const countAt = (le: number): number | undefined => buckets.find(b => b.le === le)?.count
  t.equal(countAt(2500), 1, 'only the answer of now is at most 2.5 s')
  t.equal(countAt(5000), 3, 'the two of 3 s join it at 5 s')
  t.equal(countAt(Infinity), 4, 'and the one of 6 s is counted only in Infinity')
})

t.test('a publish-to-answer time exactly on a bucket bound is counted in that bucket (le is inclusive)', async t => {
  const metrics = new CometMetrics()
  for (const latencyMs of [0.5, 5, 5000]) metrics.onAnswer(['a'], 'events', 1, 0, latencyMs)
  const { buckets } = metrics.stats(0, 0, undefined).publishToAnswerMs
  const countAt = (le: number): number | undefined => buckets.find(b => b.le === le)?.count
  t.equal(countAt(0.5), 1, '0.5 ms is at most 0.5 ms')
  t.equal(countAt(2.5), 1)
  t.equal(countAt(5), 2, '5 ms is at most 5 ms')
  t.equal(countAt(2500), 2)
  t.equal(countAt(5000), 3, 'and 5 s at most 5 s, not only in Infinity')
})

t.test('gaps are counted per channel: one reply with a gap on two channels counts two', async t => {
  const other = new MemoryEngine()
  t.teardown(() => other.close())
  const foreign = await other.publish('room', '1')
  const { app, origin } = await serve(t)
  const answers = listen(t, diagnosticsChannels.answer)
  const gapped = await poll(origin, { room: foreign, lobby: foreign, quiet: '0' })
  t.same(gapped.body.gap, ['room', 'lobby'])
  t.equal(app.comet.stats().gaps, 2)
  t.match(answers, [{ reason: 'events', gaps: 2 }])
})
