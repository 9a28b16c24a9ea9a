// A stream's steps in the bus (lib/bus/stream.ts) with an engine whose reads the test controls:
// publishes, outages, failures, hang-ups and close can fall between them, and the stream still
// hands over every event once, or ends.
import t, { type Test } from 'tap'
import type { SharedDelivery, StreamEndReason, StreamSink } from '../lib/bus/stream.js'
import { CometBus } from '../lib/bus/bus.js'
import { errors } from '../lib/errors.js'
import { fromNow, fromOldest, MemoryEngine, type ChannelBacklog, type ChannelWatcher, type CometEngine, type ReadPosition } from '../plugin.js'
import { eventually } from './helpers.js'

/** A MemoryEngine whose reads can be made to resolve later, to fail, or to throw at once. */
class ControlledEngine implements CometEngine {
  readonly memory = new MemoryEngine()
  /** 'sync' as the memory engine; 'async' resolves on a later turn; the others fail. */
  reads: 'sync' | 'async' | 'unavailable' | 'broken' | 'throw' = 'sync'
  watchAcknowledged: Promise<void> | undefined

  read (channel: string, position: ReadPosition, limit: number): ChannelBacklog | Promise<ChannelBacklog> {
    const backlog = this.memory.read(channel, position, limit)
    switch (this.reads) {
      case 'sync': return backlog
      case 'throw': throw new Error('thrown at once')
      case 'async': return new Promise(resolve => setImmediate(() => resolve(backlog)))
      case 'unavailable': return Promise.reject(new errors.FST_COMET_ENGINE_UNAVAILABLE('the test cut it'))
      case 'broken': return Promise.reject(new Error('broken'))
    }
  }

  publish (channel: string, json: string): Promise<string> { return this.memory.publish(channel, json) }
  watch (channel: string, watcher: ChannelWatcher): void | Promise<void> {
    this.memory.watch(channel, watcher)
    return this.watchAcknowledged
  }

  unwatch (channel: string, watcher: ChannelWatcher): void { this.memory.unwatch(channel, watcher) }
  channelCount (): number { return this.memory.channelCount() }
  async close (): Promise<void> { await this.memory.close() }
}

/** Records what the bus hands over; `drained` is what each delivery reports. */
class RecordingSink implements StreamSink {
  opened: string[] | undefined
  readonly delivered: unknown[] = []
  failed: unknown
  ended: StreamEndReason | undefined
  drained = true

  open (cursors: readonly string[]): void { this.opened = [...cursors] }
  deliver (backlogs: readonly ChannelBacklog[], _before: readonly string[], _shared: SharedDelivery | undefined): boolean {
    for (const backlog of backlogs) for (const event of backlog.events) this.delivered.push(JSON.parse(event.json))
    return this.drained
  }

  fail (error: unknown): void { this.failed = error }
  end (reason: StreamEndReason): void { this.ended = reason }
}

function setUp (t: Test, batchSize = 100, maxStreams = 3): { engine: ControlledEngine, bus: CometBus } {
  const engine = new ControlledEngine()
  t.teardown(() => engine.close())
  return { engine, bus: new CometBus(engine, { pollTimeoutMs: 60_000, maxPending: Infinity, batchSize, maxPayload: 65536, maxStreams }) }
}

const turn = async (): Promise<void> => await new Promise(resolve => setImmediate(resolve))

t.test('a publish while the first reads are under way is read before the stream waits', async t => {
  const { engine, bus } = setUp(t)
  engine.reads = 'async'
  const sink = new RecordingSink()
  bus.stream({ channels: ['a'], positions: [fromNow] }, sink).start()
  await bus.publish('a', 'during the first read')
  await eventually(() => sink.delivered.length > 0)
  t.ok(sink.opened)
  t.same(sink.delivered, ['during the first read'])
})

t.test('a read failing while the store is down keeps the stream and its cursors; refresh() reads again', async t => {
  const { engine, bus } = setUp(t)
  const sink = new RecordingSink()
  const stream = bus.stream({ channels: ['a'], positions: [fromNow] }, sink)
  stream.start()
  engine.reads = 'unavailable'
  await bus.publish('a', 'lost notification')
  await turn()
  t.equal(sink.ended, undefined, 'still open')
  stream.refresh()
  await turn()
  engine.reads = 'sync'
  stream.refresh()
  t.same(sink.delivered, ['lost notification'], 'nothing lost')
  stream.refresh()
  t.same(sink.delivered, ['lost notification'], 'and nothing read twice')
})

t.test('any other read failure after the stream opened ends it with "error"; one before fails it', async t => {
  const { engine, bus } = setUp(t)
  const sink = new RecordingSink()
  bus.stream({ channels: ['a'], positions: [fromNow] }, sink).start()
  engine.reads = 'broken'
  await bus.publish('a', 'x')
  await turn()
  t.equal(sink.ended, 'error')

  const thrown = new RecordingSink()
  engine.reads = 'sync'
  bus.stream({ channels: ['b'], positions: [fromNow] }, thrown).start()
  engine.reads = 'throw'
  await bus.publish('b', 'y')
  t.equal(thrown.ended, 'error', 'a read that throws at once ends the stream, not the publish')

  const failing = new RecordingSink()
  engine.reads = 'broken'
  bus.stream({ channels: ['c'], positions: [fromNow] }, failing).start()
  await turn()
  t.match(failing.failed, { message: 'broken' })
  t.equal(failing.opened, undefined)
  t.equal(engine.channelCount(), 2, 'channel c is not kept: nothing watches it (a and b hold events)')
})

t.test('a stream cancelled while its watch is acknowledged never opens, and one started while the bus closes opens and ends', async t => {
  const { engine, bus } = setUp(t)
  let acknowledge: () => void = () => {}
  engine.watchAcknowledged = new Promise(resolve => { acknowledge = resolve })
  const sink = new RecordingSink()
  const stream = bus.stream({ channels: ['a'], positions: [fromNow] }, sink)
  stream.start()
  stream.cancel()
  acknowledge()
  await turn()
  t.equal(sink.opened, undefined)
  t.equal(bus.stats().streams.open, 0)

  engine.watchAcknowledged = undefined
  bus.close()
  const late = new RecordingSink()
  bus.stream({ channels: ['a'], positions: [fromNow] }, late).start()
  t.ok(late.opened, 'it opens, so that its client has cursors')
  t.equal(late.ended, 'close')
})

t.test('a client that has not read pauses a catch-up, and resume() goes on from the cursors, or back to waiting', async t => {
  const { bus } = setUp(t, 1)
  for (const n of [1, 2, 3]) await bus.publish('a', n)
  const sink = new RecordingSink()
  sink.drained = false
  const stream = bus.stream({ channels: ['a'], positions: [fromNow] }, sink)
  stream.start()
  await bus.publish('a', 4)
  t.same(sink.delivered, [4], 'a live delivery goes, drained or not')
  await bus.publish('a', 5)
  t.same(sink.delivered, [4], 'a full batch may have more: the stream waits for its client')
  stream.resume()
  t.same(sink.delivered, [4, 5], 'and reads on from its cursor once the client has read')
  stream.resume()
  await bus.publish('a', 6)
  t.same(sink.delivered, [4, 5, 6], 'with nothing left, it waits for publishes again')

  const catchingUp = new RecordingSink()
  catchingUp.drained = false
  const second = bus.stream({ channels: ['b'], positions: [fromNow] }, catchingUp)
  second.start()
  second.resume()
  t.same(catchingUp.delivered, [], 'a waiting stream is not paused: resume() does nothing')
  await bus.publish('b', 1)
  t.same(catchingUp.delivered, [1])
  t.equal(second.channels.length, 1)
})

t.test('a catch-up the client has not read pauses the stream until resume(), which goes back to waiting when nothing is left', async t => {
  const { bus } = setUp(t)
  const fromHistory = new RecordingSink()
  fromHistory.drained = false
  await bus.publish('h', 'held')
  const third = bus.stream({ channels: ['h'], positions: [fromOldest] }, fromHistory)
  third.start()
  t.same(fromHistory.delivered, ['held'])
  await bus.publish('h', 'while paused')
  t.same(fromHistory.delivered, ['held'], 'a catch-up the client has not read yet pauses the stream')
  third.resume()
  t.same(fromHistory.delivered, ['held', 'while paused'])
  third.resume()
  await bus.publish('h', 'live')
  t.same(fromHistory.delivered, ['held', 'while paused', 'live'], 'once the client has read it all, the stream waits for publishes again')
})

t.test('past maxStreams, a stream fails with FST_COMET_TOO_MANY_STREAMS', async t => {
  const { bus } = setUp(t, 100, 2)
  for (const channel of ['a', 'b']) bus.stream({ channels: [channel], positions: [fromNow] }, new RecordingSink()).start()
  const refused = new RecordingSink()
  const stream = bus.stream({ channels: ['c'], positions: [fromNow] }, refused)
  stream.start()
  t.match(refused.failed, { code: 'FST_COMET_TOO_MANY_STREAMS', statusCode: 503 })
  t.equal(refused.opened, undefined)
})

t.test('a read that settles after the stream was cancelled hands nothing over, whether it opens, delivers or fails', async t => {
  const { engine, bus } = setUp(t)
  await bus.publish('a', 'held')
  engine.reads = 'async'
  const opening = new RecordingSink()
  const first = bus.stream({ channels: ['a'], positions: [fromOldest] }, opening)
  first.start()
  first.cancel()
  await turn()
  t.equal(opening.opened, undefined, 'the first read came back after the hang-up')
  t.same(opening.delivered, [])

  engine.reads = 'sync'
  const live = new RecordingSink()
  const second = bus.stream({ channels: ['b'], positions: [fromNow] }, live)
  second.start()
  engine.reads = 'async'
  await bus.publish('b', 'too late')
  second.cancel()
  await turn()
  t.same(live.delivered, [], 'a live read came back after the hang-up')

  engine.reads = 'sync'
  const failing = new RecordingSink()
  const third = bus.stream({ channels: ['c'], positions: [fromNow] }, failing)
  third.start()
  engine.reads = 'broken'
  const published = bus.publish('c', 'x')
  third.cancel()
  await published
  await turn()
  t.equal(failing.ended, undefined, 'a failed read came back after the hang-up')
})
