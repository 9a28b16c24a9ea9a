import t, { type Test } from 'tap'
import { fromNow, fromOldest, MemoryEngine, type MemoryEngineOptions } from '../plugin.js'
import { engineContract } from './engine-contract.js'
import { eventually } from './helpers.js'

engineContract(t, 'MemoryEngine', options => new MemoryEngine(options))

/** A clock the test moves by hand, in milliseconds. */
function fakeClock (start = 1_700_000_000_000): { now: () => number, advance: (ms: number) => void, set: (ms: number) => void } {
  let time = start
  return { now: () => time, advance: ms => { time += ms }, set: ms => { time = ms } }
}

function engineFor (t: Test, options: MemoryEngineOptions): MemoryEngine {
  const engine = new MemoryEngine(options)
  t.teardown(() => engine.close())
  return engine
}

t.test('an event older than historyTtl is no longer held, and a cursor before it gets a gap', async t => {
  const clock = fakeClock()
  const engine = engineFor(t, { historyTtl: 10, now: clock.now })
  const first = await engine.publish('room', '1')
  clock.advance(6_000)
  await engine.publish('room', '2')
  clock.advance(5_000)
  const backlog = engine.read('room', first, 10)
  t.same(backlog.events.map(e => e.json), ['2'], 'the event published 11 s ago expired')
  t.equal(backlog.gap, false, 'the cursor was that very event, so nothing after it was lost')
  const fromStart = engine.read('room', fromOldest, 10)
  t.same(fromStart.events.map(e => e.json), ['2'])
  clock.advance(5_000)
  const later = engine.read('room', first, 10)
  t.same(later, { events: [], next: later.next, gap: true }, 'now the event after the cursor expired too')
})

t.test('a cursor from another engine instance (a restart) gets a gap and everything held', async t => {
  const before = engineFor(t, {})
  const after = engineFor(t, {})
  const old = await before.publish('room', '"old"')
  await after.publish('room', '"new"')
  const backlog = after.read('room', old, 10)
  t.equal(backlog.gap, true)
  t.same(backlog.events.map(e => e.json), ['"new"'])
})

t.test('a cursor of this instance from the future was never given: gap, and the cursor moves back to now', async t => {
  const clock = fakeClock()
  const engine = engineFor(t, { now: clock.now })
  const id = await engine.publish('room', '1')
  const [instance, ms, n] = id.split('.') as [string, string, string]
  const forged = `${instance}.${(parseInt(ms, 36) + 60_000).toString(36)}.${n}`
  const backlog = engine.read('room', forged, 10)
  t.equal(backlog.gap, true)
  t.same(backlog.events.map(e => e.id), [id], 'everything held')
  t.equal(engine.read('room', backlog.next, 10).gap, false)
})

t.test('ids keep increasing when the system clock goes back', async t => {
  const clock = fakeClock()
  const engine = engineFor(t, { now: clock.now })
  const before = await engine.publish('room', '1')
  clock.advance(-60_000)
  const after = await engine.publish('room', '2')
  const backlog = engine.read('room', before, 10)
  t.same(backlog.events.map(e => e.id), [after])
})

t.test('many events in one millisecond keep their order, and "now" comes after all of them', async t => {
  const clock = fakeClock()
  const engine = engineFor(t, { now: clock.now })
  for (let n = 0; n < 50; n++) await engine.publish('room', String(n))
  const now = engine.read('room', fromNow, 100)
  const id = await engine.publish('room', '50')
  t.same(engine.read('room', now.next, 100).events.map(e => e.id), [id])
  t.same(engine.read('room', fromOldest, 100).events.map(e => e.json), Array.from({ length: 51 }, (_, n) => String(n)))
})

t.test('a channel dropped and used again: a cursor younger than historyTtl lost nothing', async t => {
  const clock = fakeClock()
  const engine = engineFor(t, { historyTtl: 10, now: clock.now })
  const watcher = { notify () {} }
  engine.watch('quiet', watcher)
  const cursor = engine.read('quiet', fromNow, 10).next
  engine.unwatch('quiet', watcher)
  t.equal(engine.channelCount(), 0, 'dropped')

  clock.advance(9_000)
  engine.watch('quiet', watcher)
  t.same(engine.read('quiet', cursor, 10), { events: [], next: engine.read('quiet', fromNow, 10).next, gap: false },
    'an event after the cursor would be younger than historyTtl and still held, so there was none')
})

t.test('a channel dropped and used again: a cursor older than historyTtl may have missed events, so it gets a gap', async t => {
  const clock = fakeClock()
  const engine = engineFor(t, { historyTtl: 10, now: clock.now })
  const cursor = engine.read('quiet', fromNow, 10).next
  clock.advance(11_000)
  // Events published after the cursor could have come and expired, and the channel been dropped.
  t.equal(engine.read('quiet', cursor, 10).gap, true)
  engine.watch('quiet', { notify () {} })
  t.equal(engine.read('quiet', cursor, 10).gap, true, 'the same when the channel was created again since')
})

t.test('a cursor that is the newest event stays gap-free after that event expires', async t => {
  const clock = fakeClock()
  const engine = engineFor(t, { historyTtl: 10, now: clock.now })
  const newest = await engine.publish('room', '1')
  clock.advance(11_000)
  engine.watch('room', { notify () {} })
  t.same(engine.read('room', newest, 10).gap, false)
})

t.test('with historyTtl Infinity events stay until historySize evicts them, and nothing is swept', async t => {
  const clock = fakeClock()
  const engine = engineFor(t, { historyTtl: Infinity, historySize: 2, now: clock.now })
  const first = await engine.publish('room', '1')
  clock.advance(365 * 24 * 3600_000)
  const backlog = engine.read('room', first, 10)
  t.same([backlog.events, backlog.gap], [[], false])
  t.same(engine.read('absent', first, 10).gap, false, 'a channel never used lost nothing, however old the cursor')
})

t.test('the sweep drops channels whose events all expired', async t => {
  const engine = engineFor(t, { historyTtl: 0.03 })
  await engine.publish('a', '1')
  await engine.publish('b', '1')
  t.equal(engine.channelCount(), 2)
  await eventually(() => engine.channelCount() === 0)
  t.equal(engine.channelCount(), 0, 'swept')
})

t.test('publishing on a closed engine is refused', async t => {
  const engine = new MemoryEngine()
  await engine.close()
  await t.rejects(engine.publish('room', '1'), { code: 'FST_COMET_CLOSED' })
})

t.test('several events expired at once: the newest of them is remembered as lost, so a cursor before it gets a gap', async t => {
  const clock = fakeClock()
  const engine = engineFor(t, { historyTtl: 10, now: clock.now })
  const first = await engine.publish('room', '1')
  clock.advance(1_000)
  await engine.publish('room', '2')
  clock.advance(4_000)
  await engine.publish('room', '3')
  // 1 and 2 expire together; 3 is still held.
  clock.advance(6_500)
  const backlog = engine.read('room', first, 10)
  t.same(backlog.events.map(e => e.json), ['3'])
  t.equal(backlog.gap, true, '2 came after the cursor and is gone')
})

t.test('the newest event is a channel\'s "now" while younger than youngMs (1 s by default), not at exactly youngMs', async t => {
  const clock = fakeClock()
  const engine = engineFor(t, { now: clock.now })
  const newest = await engine.publish('room', '1')
  clock.advance(999)
  t.equal(engine.read('room', fromNow, 10).next, newest, 'young: polls at "now" wait at the newest event')
  clock.advance(1)
  const now = engine.read('room', fromNow, 10).next
  t.not(now, newest, 'at youngMs, a cursor at "now" of its own')
  const next = await engine.publish('room', '2')
  const after = engine.read('room', now, 10)
  t.same([after.events.map(e => e.id), after.gap], [[next], false], 'and one that every later event comes after')
})

t.test('the read shared by clients caught up with the newest event ends with that event\'s youth', async t => {
  const clock = fakeClock()
  const engine = engineFor(t, { now: clock.now })
  const newest = await engine.publish('room', '1')
  clock.advance(500)
  const young = engine.read('room', newest, 10)
  t.same(young, { events: [], next: newest, gap: false })
  t.equal(engine.read('room', newest, 10), young, 'one read for all the clients caught up')
  clock.advance(500)
  const old = engine.read('room', newest, 10)
  t.same([old.events, old.gap], [[], false])
  t.not(old.next, newest, 'past its youth, a fresh cursor at "now"')
  t.equal(old.next, engine.read('room', fromNow, 10).next)
})
