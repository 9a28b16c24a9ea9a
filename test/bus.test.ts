// The bus with an engine that answers reads asynchronously, as an engine over the network does:
// publishes and hang-ups can then fall between a poll's steps.
import t, { type Test } from 'tap'
import { CometBus } from '../lib/bus/bus.js'
import { fromNow, fromOldest, MemoryEngine, type ChannelBacklog, type ChannelWatcher, type CometEngine, type ReadPosition } from '../plugin.js'
import { counters, countersWith, sleep, within } from './helpers.js'

/**
 * A MemoryEngine behind reads that resolve on a later turn of the event loop, or fail when told to,
 * and that loses its notifications when told to.
 */
class SlowEngine implements CometEngine {
  readonly #memory = new MemoryEngine()
  readonly #reads = new Set<Promise<unknown>>()
  failReads = false
  dropNotifications = false
  /** When set, watch() returns it, as an engine that waits for its server to acknowledge does. */
  watchAcknowledged: Promise<void> | undefined
  /** Reads asked for so far. */
  reads = 0

  async read (channel: string, position: ReadPosition, limit: number): Promise<ChannelBacklog> {
    this.reads++
    const backlog = this.#memory.read(channel, position, limit)
    const failing = this.failReads
    const turn = new Promise(resolve => setImmediate(resolve))
    this.#reads.add(turn)
    await turn
    this.#reads.delete(turn)
    if (failing) throw new Error('engine down')
    return backlog
  }

  /**
   * Resolves once no read is under way and whatever the finished reads set off has run: a read
   * resolves on a turn of the event loop, and what follows it in the bus takes only microtasks.
   */
  async settled (): Promise<void> {
    do {
      await Promise.all(this.#reads)
      await new Promise(resolve => setImmediate(resolve))
    } while (this.#reads.size > 0)
  }

  publish (channel: string, json: string): Promise<string> { return this.#memory.publish(channel, json) }
  watch (channel: string, watcher: ChannelWatcher): void | Promise<void> {
    this.#memory.watch(channel, this.dropNotifications ? { notify () {} } : watcher)
    return this.watchAcknowledged
  }
  unwatch (channel: string, watcher: ChannelWatcher): void { this.#memory.unwatch(channel, watcher) }
  channelCount (): number { return this.#memory.channelCount() }
  close (): Promise<void> { return this.#memory.close() }
}

function busOn (t: Test, pollTimeoutMs = 30_000): { bus: CometBus, engine: SlowEngine } {
  const engine = new SlowEngine()
  t.teardown(() => engine.close())
  const bus = new CometBus(engine, { pollTimeoutMs, maxPending: Infinity, batchSize: 100, maxPayload: 1000 })
  t.teardown(() => bus.close())
  return { bus, engine }
}

function subscription (...channels: string[]): Map<string, ReadPosition> {
  return new Map(channels.map(channel => [channel, fromNow]))
}

t.test('a hang-up while the engine is still acknowledging its watch: nothing is read, and the poll never waits', async t => {
  const { bus, engine } = busOn(t)
  let acknowledge: () => void = () => {}
  engine.watchAcknowledged = new Promise<void>(resolve => { acknowledge = resolve })
  const poll = bus.poll(subscription('room'))
  let settled = false
  poll.reply.then(() => { settled = true }, () => { settled = true })
  poll.cancel()
  acknowledge()
  await engine.settled()
  t.equal(engine.reads, 0, 'no read for a poll whose client is gone')
  t.equal(settled, false)
  t.same(counters(bus.stats()), countersWith({ hangUps: 1 }))
})

t.test('a publish while the first reads are under way is read again and answered, not missed', async t => {
  const { bus } = busOn(t)
  const poll = bus.poll(subscription('room', 'lobby'))
  const { id } = await bus.publish('room', 'during the read')
  // Far below the poll timeout: a publish missed during the reads would be found only at the timeout.
  const reply = JSON.parse(await within(poll.reply, 3000, 'the poll'))
  t.same(reply.m, { room: [{ id, data: 'during the read' }] })
  t.equal(bus.stats().pending, 0)
})

t.test('a hang-up while the first reads are under way: the poll never waits and is never answered', async t => {
  const { bus, engine } = busOn(t)
  const poll = bus.poll(subscription('room'))
  poll.cancel()
  let settled = false
  poll.reply.then(() => { settled = true }, () => { settled = true })
  await engine.settled()
  t.equal(settled, false)
  t.same(counters(bus.stats()), countersWith({ hangUps: 1 }))
  t.equal(engine.channelCount(), 0)
})

t.test('a hang-up while the answer to a publish is being read: nothing is counted as delivered', async t => {
  const { bus, engine } = busOn(t)
  const poll = bus.poll(subscription('room'))
  await engine.settled()
  t.equal(bus.stats().pending, 1)
  await bus.publish('room', 1)
  poll.cancel()
  poll.cancel()
  await engine.settled()
  t.same(counters(bus.stats()), countersWith({ channels: 1, published: 1, hangUps: 1 }))
})

t.test('an engine failing to read the answer to a publish fails that poll, and only that poll', async t => {
  const { bus, engine } = busOn(t)
  const failing = bus.poll(subscription('room'))
  await sleep(10)
  engine.failReads = true
  await bus.publish('room', 1)
  // Far below the 30 s timeout, at which the read would fail too.
  await t.rejects(within(failing.reply, 3000, 'the poll'), { message: 'engine down' })
  engine.failReads = false
  t.equal(bus.stats().pending, 0)
  const next = bus.poll(new Map([['room', fromOldest]]))
  t.match(JSON.parse(await next.reply), { s: 1 })
})

t.test('an engine failing to read at the timeout fails the poll', async t => {
  const { bus, engine } = busOn(t, 20)
  const poll = bus.poll(subscription('room'))
  await sleep(5)
  engine.failReads = true
  await t.rejects(poll.reply, { message: 'engine down' })
  t.equal(bus.stats().pending, 0)
})

t.test('an engine that drops a notification still delivers the event at the poll timeout', async t => {
  const { bus, engine } = busOn(t, 50)
  engine.dropNotifications = true
  const poll = bus.poll(subscription('room'))
  await engine.settled()
  t.equal(bus.stats().pending, 1)
  const { id } = await bus.publish('room', 'never announced')
  const reply = JSON.parse(await within(poll.reply, 3000, 'the poll'))
  t.same(reply.m, { room: [{ id, data: 'never announced' }] }, 'read again at the timeout')
  t.equal(bus.stats().delivered, 1)
})

/** A memory engine whose reads throw, synchronously as its own do, when told to. */
class BreakingEngine extends MemoryEngine {
  breakReads = false

  override read (channel: string, position: ReadPosition, limit: number): ChannelBacklog {
    if (this.breakReads) throw new Error('read broke')
    return super.read(channel, position, limit)
  }
}

t.test('a synchronous engine whose read throws while a publish wakes a poll: that poll fails, and the publish goes through', async t => {
  const engine = new BreakingEngine()
  t.teardown(() => engine.close())
  const bus = new CometBus(engine, { pollTimeoutMs: 30_000, maxPending: Infinity, batchSize: 100, maxPayload: 1000 })
  t.teardown(() => bus.close())
  const waiting = bus.poll(subscription('room'))
  const elsewhere = bus.poll(subscription('lobby'))
  t.equal(bus.stats().pending, 2, 'both wait, with no promise in between')
  engine.breakReads = true
  const { id } = await bus.publish('room', 1)
  t.ok(id, 'the publish is stored')
  await t.rejects(within(waiting.reply, 3000, 'the poll'), { message: 'read broke' })
  t.equal(bus.stats().pending, 1, 'the poll on another channel still waits')
  engine.breakReads = false
  await bus.publish('lobby', 2)
  t.match(JSON.parse(await within(elsewhere.reply, 3000, 'the other poll')), { s: 1 })
})

t.test('a poll that failed before its reply was asked for still rejects with its error', async t => {
  const engine = new MemoryEngine()
  t.teardown(() => engine.close())
  const bus = new CometBus(engine, { pollTimeoutMs: 30_000, maxPending: Infinity, batchSize: 100, maxPayload: 1000 })
  const poll = bus.poll(new Map([['room', 'not-a-cursor-of-this-engine']]))
  t.equal(bus.stats().pending, 0, 'refused at once')
  await t.rejects(poll.reply, { code: 'FST_COMET_INVALID_CURSOR' })
})

t.test('a hang-up while the answer to a publish is being read, and then the read fails: the poll hears nothing more', async t => {
  const { bus, engine } = busOn(t)
  const heard: string[] = []
  const poll = bus.poll(subscription('room'), { answerer: { answer: () => { heard.push('answer') }, fail: () => { heard.push('failure') } } })
  await engine.settled()
  t.equal(bus.stats().pending, 1)
  engine.failReads = true
  await bus.publish('room', 1)
  poll.cancel()
  await engine.settled()
  t.same(heard, [], 'no answer and no failure for a client that is gone')
  t.same(counters(bus.stats()), countersWith({ channels: 1, published: 1, hangUps: 1 }))
})

/** A memory engine that can wake a channel's watchers with nothing new, as the Redis engine's heal may. */
class NudgingEngine extends MemoryEngine {
  readonly #watchers = new Map<string, Set<ChannelWatcher>>()

  override watch (channel: string, watcher: ChannelWatcher): void {
    super.watch(channel, watcher)
    let watchers = this.#watchers.get(channel)
    if (watchers === undefined) this.#watchers.set(channel, watchers = new Set())
    watchers.add(watcher)
  }

  override unwatch (channel: string, watcher: ChannelWatcher): void {
    super.unwatch(channel, watcher)
    this.#watchers.get(channel)?.delete(watcher)
  }

  nudge (channel: string): void {
    for (const watcher of [...this.#watchers.get(channel) ?? []]) watcher.notify(channel)
  }
}

t.test('a read shared by the polls one wake-up woke is not reused by a later publish at the same cursor', async t => {
  // A clock that stands still: the cursor at "now" stays the same string.
  const engine = new NudgingEngine({ now: () => 1_700_000_000_000 })
  t.teardown(() => engine.close())
  const bus = new CometBus(engine, { pollTimeoutMs: 30_000, maxPending: Infinity, batchSize: 100, maxPayload: 1000 })
  t.teardown(() => bus.close())
  const first = bus.poll(subscription('room'))
  engine.nudge('room')
  const { p: { room: cursor } } = JSON.parse(await first.reply) as { p: { room: string } }
  const second = bus.poll(new Map([['room', cursor]]))
  t.equal(bus.stats().pending, 1, 'waits at the cursor the wake-up read from')
  const { id } = await bus.publish('room', 'news')
  t.same(JSON.parse(await within(second.reply, 1000, 'the second poll')).m, { room: [{ id, data: 'news' }] }, 'a fresh read finds the event')
})

t.test('no expiry timer is left once the last waiting poll leaves, by hang-up or answer', async t => {
  const engine = new MemoryEngine()
  t.teardown(() => engine.close())
  const bus = new CometBus(engine, { pollTimeoutMs: 30_000, maxPending: Infinity, batchSize: 100, maxPayload: 1000 })
  t.teardown(() => bus.close())
  const timers = (): number => process.getActiveResourcesInfo().filter(resource => resource === 'Timeout').length
  const before = timers()
  const hangingUp = bus.poll(subscription('a'))
  const answered = bus.poll(subscription('b'))
  t.equal(timers(), before + 1, 'one timer for every waiting poll')
  hangingUp.cancel()
  t.equal(timers(), before + 1, 'kept while a poll still waits')
  await bus.publish('b', 1)
  await answered.reply
  t.equal(timers(), before, 'none once no poll waits')
  bus.poll(subscription('c')).cancel()
  t.equal(timers(), before, 'none after a poll that waited alone hung up')
})
