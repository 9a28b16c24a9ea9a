// The memory engine's budgets: historyBytes across all channels and historyChannels. Past either,
// the oldest events of any channel are evicted, a client that needed them gets a gap, and a
// publish never fails.
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import t, { type Test } from 'tap'
import { fromOldest, MemoryEngine, type MemoryEngineOptions } from '../plugin.js'
import { eventually, poll, serve } from './helpers.js'

function engineFor (t: Test, options: MemoryEngineOptions): MemoryEngine {
  const engine = new MemoryEngine({ historyTtl: Infinity, ...options })
  t.teardown(() => engine.close())
  return engine
}

const kilobyte = JSON.stringify('x'.repeat(1000))

t.test('past historyBytes the oldest events of any channel are evicted, and the held bytes stay within it', async t => {
  // Regression: 16 loops publishing 64 KB to new channels ran the process out of heap.
  const engine = engineFor(t, { historyBytes: 20_000 })
  const firsts: Record<string, string> = {}
  for (let i = 0; i < 60; i++) {
    const channel = `c${i % 3}`
    const id = await engine.publish(channel, kilobyte)
    firsts[channel] ??= id
    t.ok(engine.historyUsage().bytes <= 20_000, `within the budget after publish ${i}`)
  }
  const held = ['c0', 'c1', 'c2'].map(channel => engine.read(channel, fromOldest, 100).events.length)
  t.ok(held.every(count => count > 0 && count < 20), `every channel lost its oldest: ${held.join(', ')} held`)
  t.ok(Math.max(...held) - Math.min(...held) <= 1, 'evicted by age across channels, not channel by channel')
  for (const channel of ['c0', 'c1', 'c2']) {
    const backlog = engine.read(channel, firsts[channel] as string, 100)
    t.equal(backlog.gap, true, `${channel}: a cursor before the evicted events gets a gap`)
  }
  t.equal(engine.read('c0', fromOldest, 100).gap, false, '"all" asks only for what is held')
})

t.test('a publish never fails for the budget, even one event larger than all of it', async t => {
  const engine = engineFor(t, { historyBytes: 500 })
  await engine.publish('small', '1')
  const id = await engine.publish('large', kilobyte)
  t.same(engine.read('large', fromOldest, 10).events.map(e => e.id), [id], 'the newest event is kept')
  t.equal(engine.channelCount(), 1, 'the older channel was evicted, and dropped')
})

t.test('a channel evicted whole and dropped still tells a returning client of the gap', async t => {
  const engine = engineFor(t, { historyBytes: 5000 })
  const cursor = engine.read('quiet', fromOldest, 10).next
  await engine.publish('quiet', kilobyte)
  for (let i = 0; i < 10; i++) await engine.publish(`busy${i}`, kilobyte)
  t.equal(engine.read('quiet', fromOldest, 10).events.length, 0, 'everything of the channel is gone')
  const backlog = engine.read('quiet', cursor, 10)
  t.equal(backlog.gap, true, 'the client that had not seen the event is told')
  t.equal(engine.read('quiet', backlog.next, 10).gap, false, 'once')
})

t.test('a channel that never lost anything gets no gap when others are evicted', async t => {
  const engine = engineFor(t, { historyBytes: 5000 })
  const cursor = engine.read('untouched', fromOldest, 10).next
  for (let i = 0; i < 20; i++) await engine.publish(`busy${i}`, kilobyte)
  t.equal(engine.read('untouched', cursor, 10).gap, false)
})

t.test('a watched channel emptied by eviction reports the gap, before and after its watcher leaves', async t => {
  const engine = engineFor(t, { historyBytes: 3000 })
  const watcher = { notify () {} }
  engine.watch('room', watcher)
  const cursor = engine.read('room', fromOldest, 10).next
  await engine.publish('room', kilobyte)
  for (let i = 0; i < 5; i++) await engine.publish(`other${i}`, kilobyte)
  t.equal(engine.read('room', cursor, 10).gap, true)
  engine.unwatch('room', watcher)
  t.equal(engine.read('room', cursor, 10).gap, true, 'remembered once the channel is dropped')
})

t.test('past historyChannels the channel with the oldest event is evicted', async t => {
  const engine = engineFor(t, { historyChannels: 3 })
  const cursors: string[] = []
  for (let i = 0; i < 5; i++) {
    cursors.push(engine.read(`c${i}`, fromOldest, 10).next)
    await engine.publish(`c${i}`, String(i))
  }
  t.equal(engine.historyUsage().channels, 3)
  t.equal(engine.channelCount(), 3)
  t.same([0, 1, 2, 3, 4].map(i => engine.read(`c${i}`, cursors[i] as string, 10).gap), [true, true, false, false, false])
})

t.test('when the names of dropped channels are too many to remember, an older cursor gets a gap anyway', async t => {
  const engine = engineFor(t, { historyChannels: 2 })
  const cursor = engine.read('first', fromOldest, 10).next
  for (let i = 0; i < 10; i++) await engine.publish(`c${i}`, String(i))
  t.equal(engine.read('first', cursor, 10).gap, true, 'conservative: it may have lost an event')
  t.equal(engine.read('later', engine.read('later', fromOldest, 10).next, 10).gap, false, 'a cursor from after every loss does not')
})

t.test('a forgotten loss older than historyTtl is swept; its age alone reports the gap', async t => {
  const engine = new MemoryEngine({ historyTtl: 0.05, historyBytes: 2000 })
  t.teardown(() => engine.close())
  const cursor = engine.read('quiet', fromOldest, 10).next
  await engine.publish('quiet', kilobyte)
  await engine.publish('busy', kilobyte)
  await eventually(() => engine.channelCount() === 0)
  t.equal(engine.read('quiet', cursor, 10).gap, true)
})

t.test('the plugin passes historyBytes and historyChannels to its engine', async t => {
  const { app } = await serve(t, { historyChannels: 2, historyBytes: 100_000 })
  for (let i = 0; i < 5; i++) await app.comet.publish(`c${i}`, i)
  t.equal(app.comet.stats().channels, 2)
})

t.test('a client whose events were evicted by the budget gets gap in its next reply', async t => {
  const { app, origin } = await serve(t, { historyBytes: 5000, tries: 1, sleep: 0.01 })
  const first = await poll(origin, { room: '0' })
  await app.comet.publish('room', 'missed')
  for (let i = 0; i < 10; i++) await app.comet.publish(`flood${i}`, 'x'.repeat(1000))
  const { body } = await poll(origin, first.body.p)
  t.same(body.gap, ['room'])
  t.same(body.m, {})
})

t.test('events evicted by historySize or expired leave the budget counting exactly what is held', async t => {
  let now = 1_700_000_000_000
  const engine = new MemoryEngine({ historySize: 2, historyTtl: 10, historyBytes: 1_000_000, now: () => now })
  t.teardown(() => engine.close())
  const empty = engine.historyUsage()
  await engine.publish('a', '"old"')
  now += 6000
  for (let i = 0; i < 4; i++) await engine.publish('b', String(i)) // evicts from the middle of the engine-wide list
  t.same(engine.read('b', fromOldest, 10).events.map(e => e.json), ['2', '3'])
  now += 5000
  t.same(engine.read('a', fromOldest, 10).events, [], '"a" expired')
  t.equal(engine.historyUsage().channels, 1)
  now += 10_000
  engine.read('b', fromOldest, 10)
  t.same(engine.historyUsage(), empty, 'nothing held, nothing counted')
  await engine.publish('c', '1')
  t.equal(engine.read('c', fromOldest, 10).events.length, 1, 'the list works on after being emptied')
})

t.test('an evicted event is free to be collected: the engine keeps only its place', async t => {
  // Regression: the newest lost event of each channel, data and all, was kept to report gaps, so a
  // flood to new channels kept every evicted event of up to historyChannels channels alive.
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as () => void
  const engine = engineFor(t, { historyBytes: 5000 })
  await engine.publish('first', kilobyte)
  const evicted = new WeakRef(engine.read('first', fromOldest, 10).events[0] as object)
  for (let i = 0; i < 10; i++) await engine.publish(`flood${i}`, kilobyte)
  t.equal(engine.read('first', fromOldest, 10).events.length, 0, 'evicted')
  await new Promise(resolve => setImmediate(resolve))
  gc()
  t.equal(evicted.deref(), undefined, 'collected')
})
