// The bus with an engine that answers reads asynchronously, as an engine over the network does:
// publishes and hang-ups can then fall between a poll's steps.
import t, { type Test } from 'tap'
import { CometBus } from '../lib/bus.js'
import { fromNow, fromOldest, MemoryEngine, type ChannelBacklog, type ChannelWatcher, type CometEngine, type ReadPosition } from '../plugin.js'
import { counters, countersWith, sleep } from './helpers.js'

/** A MemoryEngine behind reads that resolve on a later turn of the event loop, or fail when told to. */
class SlowEngine implements CometEngine {
  readonly #memory = new MemoryEngine()
  failReads = false

  async read (channel: string, position: ReadPosition, limit: number): Promise<ChannelBacklog> {
    const backlog = this.#memory.read(channel, position, limit)
    const failing = this.failReads
    await new Promise(resolve => setImmediate(resolve))
    if (failing) throw new Error('engine down')
    return backlog
  }

  publish (channel: string, json: string): Promise<string> { return this.#memory.publish(channel, json) }
  watch (channel: string, watcher: ChannelWatcher): void { this.#memory.watch(channel, watcher) }
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

t.test('a publish while the first reads are under way is read again and answered, not missed', async t => {
  const { bus } = busOn(t)
  const poll = bus.poll(subscription('room', 'lobby'))
  const { id } = await bus.publish('room', 'during the read')
  const reply = JSON.parse(await poll.reply)
  t.same(reply.m, { room: [{ id, data: 'during the read' }] })
  t.equal(bus.stats().pending, 0)
})

t.test('a hang-up while the first reads are under way: the poll never waits and is never answered', async t => {
  const { bus, engine } = busOn(t)
  const poll = bus.poll(subscription('room'))
  poll.cancel()
  let settled = false
  poll.reply.then(() => { settled = true }, () => { settled = true })
  await sleep(20)
  t.equal(settled, false)
  t.same(counters(bus.stats()), countersWith({ hangUps: 1 }))
  t.equal(engine.channelCount(), 0)
})

t.test('a hang-up while the answer to a publish is being read: nothing is counted as delivered', async t => {
  const { bus } = busOn(t)
  const poll = bus.poll(subscription('room'))
  await sleep(10)
  t.equal(bus.stats().pending, 1)
  await bus.publish('room', 1)
  poll.cancel()
  poll.cancel()
  await sleep(20)
  t.same(counters(bus.stats()), countersWith({ channels: 1, published: 1, hangUps: 1 }))
})

t.test('an engine failing to read the answer to a publish fails that poll, and only that poll', async t => {
  const { bus, engine } = busOn(t)
  const failing = bus.poll(subscription('room'))
  await sleep(10)
  engine.failReads = true
  await bus.publish('room', 1)
  await t.rejects(failing.reply, { message: 'engine down' })
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
