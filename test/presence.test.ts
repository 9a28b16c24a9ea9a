// Presence on one process with the memory engine: who is a member, the grace period after the
// last poll, joins and leaves on <channel>@presence, the caps, the route, and bad identities.
import { Writable } from 'node:stream'
import Fastify, { type FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import comet, { fromOldest, MemoryEngine, type CometEngine, type CometOptions, type PresenceEntry, type PresenceStore } from '../plugin.js'
import { PresenceTracker } from '../lib/presence/tracker.js'
import { eventually, serve, sleep } from './helpers.js'
import { idsOf, memberFromHeader, MemberList, pollAs, type PresenceEvent } from './presence-helpers.js'

/** A clock the test moves by hand, in milliseconds. */
function fakeClock (start = 1_700_000_000_000): { now: () => number, advance: (ms: number) => void } {
  let time = start
  return { now: () => time, advance: ms => { time += ms } }
}

/** The next turn of the event loop, when the tracker writes the members that came in this one. */
const nextTurn = async (): Promise<void> => await new Promise(resolve => setImmediate(resolve))

const alice = { id: 'alice', infoJson: '{"name":"Alice"}' }
const bob = { id: 'bob', infoJson: 'null' }

/** A tracker on the memory engine's store, both on the fake clock, its writes counted. */
function trackerOn (t: Test, clock: { now: () => number }, { graceMs = 10_000, maxMembers = 100 } = {}): { tracker: PresenceTracker, engine: MemoryEngine, writes: PresenceEntry[][] } {
  const engine = new MemoryEngine({ now: clock.now })
  const store = engine.presenceStore()
  const writes: PresenceEntry[][] = []
  const counted: PresenceStore = {
    refresh: async (channel, entries, events) => {
      writes.push([...entries])
      return await store.refresh(channel, entries, events)
    },
    snapshot: async (channel, limit, events) => await store.snapshot(channel, limit, events)
  }
  // A refresh interval far beyond the test: the test refreshes by hand.
  const tracker = new PresenceTracker(counted, { graceMs, refreshMs: 3_600_000, watchMs: graceMs, maxMembers, events: () => true, onError: error => { throw error }, now: clock.now })
  t.teardown(async () => {
    tracker.close()
    await engine.close()
  })
  return { tracker, engine, writes }
}

function eventsOf (engine: MemoryEngine, channel: string): PresenceEvent[] {
  return engine.read(`${channel}@presence`, fromOldest, 1000).events.map(e => JSON.parse(e.json) as PresenceEvent)
}

t.test('a member stays for the grace period after its last poll, then leaves with one leave event (fake clock)', async t => {
  const clock = fakeClock()
  const { tracker, engine } = trackerOn(t, clock)
  tracker.hold('room', alice)
  await nextTurn()
  t.same(eventsOf(engine, 'room'), [{ type: 'join', id: 'alice', info: { name: 'Alice' }, since: clock.now() }], 'the join is written at the next turn, not at the next refresh')
  clock.advance(30_000)
  await tracker.refresh()
  t.equal((await tracker.snapshot('room')).count, 1, 'present as long as its poll is open, however long')
  tracker.release('room', 'alice')
  clock.advance(9_999)
  await tracker.refresh()
  t.same(idsOf(await tracker.snapshot('room')), ['alice'], 'still present 1 ms before the grace period ends')
  clock.advance(1)
  await tracker.refresh()
  t.same(await tracker.snapshot('room'), { count: 0, members: [], cursor: engine.read('room@presence', fromOldest, 10).next })
  await tracker.refresh()
  clock.advance(60_000)
  await tracker.refresh()
  t.same(eventsOf(engine, 'room').map(e => e.type), ['join', 'leave'], 'one leave, however often the channel is purged')
})

t.test('polls of one identity are one member, until the last one ends (fake clock)', async t => {
  const clock = fakeClock()
  const { tracker, engine } = trackerOn(t, clock)
  tracker.hold('room', alice)
  tracker.hold('room', alice)
  tracker.hold('room', bob)
  await nextTurn()
  t.equal((await tracker.snapshot('room')).count, 2)
  tracker.release('room', 'alice')
  clock.advance(20_000)
  await tracker.refresh()
  t.same(idsOf(await tracker.snapshot('room')), ['alice', 'bob'], 'one of two polls ended long ago: still a member')
  tracker.release('room', 'alice')
  tracker.release('room', 'bob')
  clock.advance(10_000)
  await tracker.refresh()
  t.equal((await tracker.snapshot('room')).count, 0)
  t.same(eventsOf(engine, 'room').map(e => `${e.type} ${e.id}`), ['join alice', 'join bob', 'leave alice', 'leave bob'])
})

t.test('a member polling again is not written again until the next refresh: no write per poll (fake clock)', async t => {
  const clock = fakeClock()
  const { tracker, writes } = trackerOn(t, clock)
  tracker.hold('room', alice)
  tracker.hold('room', bob)
  await nextTurn()
  t.equal(writes.length, 1, 'two new members of one channel in one turn: one write')
  for (let i = 0; i < 100; i++) {
    tracker.release('room', 'alice')
    clock.advance(10)
    tracker.hold('room', alice)
  }
  await nextTurn()
  t.equal(writes.length, 1, '100 polls of a known member write nothing')
  await tracker.refresh()
  t.equal(writes.length, 2, 'the refresh writes the channel once')
  t.same(writes[1]?.map(e => e.id), ['alice', 'bob'])
  tracker.release('room', 'bob')
  await tracker.refresh()
  await tracker.refresh()
  t.same(writes.slice(2).map(w => w.map(e => `${e.id} ${e.ttlMs}`)), [['alice 10000', 'bob 10000'], ['alice 10000']], 'a member whose last poll ended is told its end once')
})

t.test('a snapshot lists the longest-present members up to presenceMaxMembers, with the exact count (fake clock)', async t => {
  const clock = fakeClock()
  const { tracker } = trackerOn(t, clock, { maxMembers: 2 })
  for (const id of ['m1', 'm2', 'm3', 'm4']) {
    tracker.hold('big', { id, infoJson: '1' })
    clock.advance(1)
  }
  const snapshot = await tracker.snapshot('big')
  t.equal(snapshot.count, 4)
  t.same(snapshot.members.map(m => m.id), ['m1', 'm2'])
})

t.test('a channel whose events a client here reads is purged here until watchMs after its last poll (fake clock)', async t => {
  const clock = fakeClock()
  const { tracker, writes } = trackerOn(t, clock, { graceMs: 1000 })
  tracker.watch('room')
  await tracker.refresh()
  t.same(writes, [[]], 'purged, with no members of its own')
  clock.advance(1000)
  await tracker.refresh()
  t.same(writes, [[]], 'no longer once watchMs has passed')
})

t.test('regression: the last member\'s leave is told when its last write reached the store a little late', async t => {
  const clock = fakeClock()
  // Redis runs a script a round trip after the process computed its durations.
  let writeDelayMs = 0
  const engine = new MemoryEngine({ now: () => clock.now() + writeDelayMs })
  const tracker = new PresenceTracker(engine.presenceStore(), { graceMs: 1000, refreshMs: 3_600_000, watchMs: 1000, maxMembers: 10, events: () => true, onError: error => { throw error }, now: clock.now })
  t.teardown(async () => {
    tracker.close()
    await engine.close()
  })
  tracker.hold('room', alice)
  await nextTurn()
  tracker.release('room', 'alice')
  writeDelayMs = 5
  await tracker.refresh()
  writeDelayMs = 0
  clock.advance(1000)
  await tracker.refresh()
  t.same(eventsOf(engine, 'room').map(e => e.type), ['join'], 'gone here, and 5 ms left in the store')
  clock.advance(250)
  await tracker.refresh()
  t.same(eventsOf(engine, 'room').map(e => e.type), ['join', 'leave'], 'the next refresh purges the channel, though no member is held here')
})

t.test('a tracker closed with a join still to write writes nothing more', async t => {
  const { tracker, writes } = trackerOn(t, fakeClock())
  tracker.hold('room', alice)
  tracker.close()
  await nextTurn()
  t.same(writes, [])
})

t.test('a write that fails is reported and made again at the next refresh', async t => {
  const clock = fakeClock()
  const failures: string[] = []
  const written: string[][] = []
  let failing = true
  const store: PresenceStore = {
    refresh: async (_channel, entries) => {
      if (failing) throw new Error('down')
      written.push(entries.map(e => e.id))
    },
    snapshot: async () => ({ count: 0, members: [] })
  }
  const tracker = new PresenceTracker(store, { graceMs: 1000, refreshMs: 3_600_000, watchMs: 1000, maxMembers: 10, events: () => false, onError: (error, channel) => failures.push(`${channel}: ${(error as Error).message}`), now: clock.now })
  t.teardown(() => tracker.close())
  tracker.hold('room', alice)
  tracker.release('room', 'alice')
  await nextTurn()
  await nextTurn()
  t.same(failures, ['room: down'])
  failing = false
  await tracker.refresh()
  t.same(written, [['alice']], 'the member whose end was not written is sent again')
})

// --- Over HTTP -----------------------------------------------------------------------------------

const fast = { tries: 1, sleep: 0.1, presenceGrace: 0.3, presenceEvents: true, presence: memberFromHeader } satisfies CometOptions

t.test('members join and leave with their polls, and a page rebuilds the list from the events', async t => {
  const { app, origin } = await serve(t, fast)
  const page = new MemberList('room', await app.comet.presence('room'))
  t.same(page.members.size, 0)
  const polls = [pollAs(origin, 'alice', ['room']), pollAs(origin, 'bob', ['room', 'other'])]
  await eventually(async () => (await app.comet.presence('room')).count === 2)
  const snapshot = await app.comet.presence('room')
  t.same(snapshot.members.map(m => [m.id, m.info]), [['alice', { name: 'ALICE' }], ['bob', { name: 'BOB' }]])
  t.ok(snapshot.members.every(m => typeof m.since === 'number' && m.since <= Date.now()), 'since when, in ms')
  await page.catchUp(origin)
  t.same([...page.members.keys()], ['alice', 'bob'])
  await Promise.all(polls)
  await eventually(async () => (await app.comet.presence('room')).count === 0)
  await page.catchUp(origin)
  t.same(page.events.map(e => `${e.type} ${e.id}`), ['join alice', 'join bob', 'leave alice', 'leave bob'])
  t.equal(page.gaps, 0)
  t.equal(page.members.size, 0)
  t.same((await app.comet.presence('other')).count, 0, 'bob was on other too, and left it as well')
})

t.test('polls sharing one identity (tabs, devices) are one member with one join', async t => {
  const { app, origin } = await serve(t, fast)
  const page = new MemberList('room', await app.comet.presence('room'))
  const tabs = new AbortController()
  const polls = [1, 2, 3].map(async () => await pollAs(origin, 'alice', ['room'], tabs.signal).catch(() => undefined))
  await eventually(async () => (await app.comet.presence('room')).count === 1)
  await sleep(50)
  t.equal((await app.comet.presence('room')).count, 1)
  tabs.abort()
  await Promise.all(polls)
  await eventually(async () => (await app.comet.presence('room')).count === 0)
  await page.catchUp(origin)
  t.same(page.events.map(e => `${e.type} ${e.id}`), ['join alice', 'leave alice'])
})

t.test('a client that hangs up and never comes back is present for the grace period, then leaves once', async t => {
  const { app, origin } = await serve(t, { ...fast, tries: 100, presenceGrace: 0.4 })
  const page = new MemberList('room', await app.comet.presence('room'))
  const gone = new AbortController()
  const hungUp = pollAs(origin, 'carol', ['room'], gone.signal).catch(() => 'aborted')
  await eventually(async () => (await app.comet.presence('room')).count === 1)
  const start = Date.now()
  gone.abort()
  t.equal(await hungUp, 'aborted')
  await sleep(200)
  t.equal((await app.comet.presence('room')).count, 1, 'still present within the grace period')
  await eventually(async () => (await app.comet.presence('room')).count === 0)
  t.ok(Date.now() - start >= 400, 'gone no sooner than the grace period')
  await sleep(300)
  await page.catchUp(origin)
  t.same(page.events.map(e => `${e.type} ${e.id}`), ['join carol', 'leave carol'])
})

t.test('an open stream is a member for its whole life, then leaves after the grace period', async t => {
  const { app, origin } = await serve(t, fast)
  const page = new MemberList('room', await app.comet.presence('room'))
  const stream = new AbortController()
  const response = await fetch(`${origin}/comet/subscribe?subscribed[room]=0`, { headers: { accept: 'text/event-stream', 'x-user': 'dana' }, signal: stream.signal })
  t.match(response.headers.get('content-type'), /^text\/event-stream/)
  await eventually(async () => (await app.comet.presence('room')).count === 1)
  // Twice the grace period, and many poll timeouts: a stream needs no poll to stay.
  await sleep(600)
  t.equal((await app.comet.presence('room')).count, 1, 'present while the stream is open')
  stream.abort()
  await eventually(async () => (await app.comet.presence('room')).count === 0)
  await page.catchUp(origin)
  t.same(page.events.map(e => `${e.type} ${e.id}`), ['join dana', 'leave dana'])
})

t.test('a stream of <channel>@presence is authorized as <channel>, like a poll of it', async t => {
  const asked: string[] = []
  const { origin } = await serve(t, { ...fast, authorizeSubscribe: (_request, channel) => { asked.push(channel); return channel === 'room' } })
  const stream = new AbortController()
  t.teardown(() => { stream.abort() })
  const allowed = await fetch(`${origin}/comet/subscribe?subscribed[room@presence]=0`, { headers: { accept: 'text/event-stream' }, signal: stream.signal })
  t.equal(allowed.status, 200)
  t.same(asked, ['room'])
  const denied = await fetch(`${origin}/comet/subscribe?subscribed[other@presence]=0`, { headers: { accept: 'text/event-stream' } })
  t.equal(denied.status, 403)
  t.match(await denied.json(), { code: 'FST_COMET_FORBIDDEN' })
})

t.test('a client that hangs up while the presence hook runs is held for the grace period only', async t => {
  let finishHook = (): void => {}
  const hookMayFinish = new Promise<void>(resolve => { finishHook = resolve })
  let hookEntered = (): void => {}
  const entered = new Promise<void>(resolve => { hookEntered = resolve })
  const { app, origin } = await serve(t, {
    ...fast,
    tries: 100,
    presence: async request => {
      hookEntered()
      await hookMayFinish
      return memberFromHeader(request)
    }
  })
  const gone = new AbortController()
  const hungUp = pollAs(origin, 'dave', ['room'], gone.signal).catch(() => 'aborted')
  await entered
  gone.abort()
  t.equal(await hungUp, 'aborted')
  await sleep(50)
  finishHook()
  await eventually(async () => (await app.comet.presence('room')).count === 1)
  // Held until its poll ends, which it did already: gone after the grace period, not 10 s later.
  await eventually(async () => (await app.comet.presence('room')).count === 0, 1500)
})

t.test('presence is asked after authorizeSubscribe, and null makes no member', async t => {
  const asked: string[] = []
  const { app, origin } = await serve(t, {
    ...fast,
    authorizeSubscribe: (_request, channel) => { asked.push(`authorize ${channel}`); return channel !== 'secret' },
    presence: (request, channel) => { asked.push(`presence ${channel}`); return channel === 'lobby' ? memberFromHeader(request) : null }
  })
  const denied = await fetch(`${origin}/comet/subscribe?subscribed[secret]=0`, { headers: { 'x-user': 'eve' } })
  t.equal(denied.status, 403)
  t.same(asked, ['authorize secret'], 'a denied poll never reaches the presence hook')
  asked.length = 0
  await pollAs(origin, 'eve', ['lobby', 'news'])
  t.same(asked, ['authorize lobby', 'authorize news', 'presence lobby', 'presence news'])
  t.equal((await app.comet.presence('news')).count, 0, 'null: no member')
  t.equal((await app.comet.presence('lobby')).count, 1)
})

t.test('<channel>@presence is read by whoever may subscribe to <channel>, and published on by nobody', async t => {
  const asked: string[] = []
  const { app, origin } = await serve(t, { ...fast, authorizeSubscribe: (_request, channel) => { asked.push(channel); return channel === 'room' } })
  const allowed = await fetch(`${origin}/comet/subscribe?subscribed[room@presence]=0&wait=0`)
  t.equal(allowed.status, 200)
  t.same(asked, ['room'], 'authorized as the channel it tells of')
  const denied = await fetch(`${origin}/comet/subscribe?subscribed[other@presence]=0&wait=0`)
  t.equal(denied.status, 403)
  t.match(await denied.json(), { code: 'FST_COMET_FORBIDDEN', message: 'fastify-comet: not allowed to subscribe to channel "other"' })

  for (const url of ['/comet/publish/room@presence', '/comet/publish?channel=room@presence']) {
    const published = await fetch(`${origin}${url}`, { method: 'POST' })
    t.equal(published.status, 403)
    t.match(await published.json(), { code: 'FST_COMET_PRESENCE_CHANNEL' })
  }
  await t.rejects(app.comet.publish('room@presence', {}), { code: 'FST_COMET_PRESENCE_CHANNEL', statusCode: 403 })
  await t.resolves(app.comet.publish('room', {}), 'other channels as before')
  await t.resolves(app.comet.publish('@presence', {}), 'the suffix alone is an ordinary channel')
})

t.test('the presence route answers a snapshot to those who may subscribe', async t => {
  const { origin } = await serve(t, { ...fast, presenceMaxMembers: 2, authorizeSubscribe: (_request, channel) => channel !== 'secret' })
  const polls = ['ann', 'ben', 'cat'].map(user => pollAs(origin, user, ['room']))
  await Promise.all(polls)
  const byPath = await fetch(`${origin}/comet/presence/room`)
  t.equal(byPath.status, 200)
  t.equal(byPath.headers.get('cache-control'), 'no-store')
  const snapshot = await byPath.json() as { count: number, members: Array<{ id: string }>, cursor: string }
  t.equal(snapshot.count, 3, 'the count is exact')
  t.same(snapshot.members.map(m => m.id), ['ann', 'ben'], 'the list stops at presenceMaxMembers')
  t.type(snapshot.cursor, 'string')
  const byQuery = await fetch(`${origin}/comet/presence?channel=room`)
  t.match(await byQuery.json(), { count: 3 })
  const denied = await fetch(`${origin}/comet/presence/secret`)
  t.equal(denied.status, 403)
  t.match(await denied.json(), { code: 'FST_COMET_FORBIDDEN', message: 'fastify-comet: not allowed to read the members of channel "secret"' })
  const bad = await fetch(`${origin}/comet/presence/bad%20name`)
  t.equal(bad.status, 400)
  t.match(await bad.json(), { code: 'FST_COMET_INVALID_CHANNEL' })
})

t.test('presenceEvents picks the channels with joins and leaves; names too long for <channel>@presence have none', async t => {
  const long = 'x'.repeat(120)
  const { app } = await serve(t, { ...fast, presenceEvents: channel => channel.startsWith('small:') })
  t.type((await app.comet.presence('small:1')).cursor, 'string')
  t.equal((await app.comet.presence('big:1')).cursor, undefined, 'no events, no cursor')
  const { app: all } = await serve(t, { ...fast, presenceEvents: true })
  t.equal((await all.comet.presence(long)).cursor, undefined)
  t.type((await all.comet.presence(long.slice(1))).cursor, 'string', '119 characters and @presence make 128')
  const { app: none } = await serve(t, { ...fast, presenceEvents: undefined })
  t.equal((await none.comet.presence('small:1')).cursor, undefined, 'off by default')
  await t.rejects(none.comet.presence('bad name'), { code: 'FST_COMET_INVALID_CHANNEL', message: /name "bad name"/ })
  await t.rejects(none.comet.presence(undefined as never), { code: 'FST_COMET_INVALID_CHANNEL', message: /name undefined/ })
})

/** An app whose log lines the test reads. */
async function loggedApp (t: Test, options: CometOptions): Promise<{ app: FastifyInstance, logs: Array<Record<string, any>> }> {
  const logs: Array<Record<string, any>> = []
  const stream = new Writable({ write (chunk: Buffer, _encoding, done) { logs.push(JSON.parse(chunk.toString())); done() } })
  const app = Fastify({ logger: { level: 'warn', stream } })
  t.teardown(() => app.close())
  await app.register(comet, options)
  return { app, logs }
}

t.test('a wrong identity from the hook fails the poll with a coded 500, logged with what to fix', async t => {
  const results: Record<string, unknown> = {
    undefined,
    'a string': 'alice',
    'an array': ['alice'],
    'a function': () => {},
    'a number id': { id: 42 },
    'a null id': { id: null },
    'an object id': { id: {} },
    'an empty id': { id: '' },
    'a long id': { id: 'x'.repeat(257) },
    'info that is a function': { id: 'a', info: () => {} },
    'cyclic info': (() => { const info: Record<string, unknown> = {}; info.self = info; return { id: 'a', info } })(),
    'big info': { id: 'a', info: 'x'.repeat(5000) }
  }
  let result: unknown
  const { app, logs } = await loggedApp(t, { ...fast, presence: () => result as never })
  for (const [what, value] of Object.entries(results)) {
    result = value
    const response = await app.inject({ url: '/comet/subscribe?subscribed[room]=0' })
    t.equal(response.statusCode, 500, what)
    t.equal(response.json().code, 'FST_COMET_INVALID_PRESENCE', what)
  }
  t.match(logs.map(l => l.err?.message), [
    /the presence hook gave undefined for channel "room"; return null, or an object/,
    /gave "alice"/,
    /gave an array/,
    /gave a function/,
    /gave an id of 42 for channel "room"; give each member an id that is a string of 1 to 256 characters/,
    /gave an id of null/,
    /gave an id of an object/,
    /an id of ""/,
    /an id of "x{40}…"/,
    /info that is a function/,
    /info that is not JSON \(Converting circular/,
    /info of 5002 bytes as JSON .* keep info within 4096 bytes/
  ])
  t.equal(logs.every(l => l.level === 50), true, 'each at level error')
  t.equal((await app.comet.presence('room')).count, 0, 'and no member')
  result = { id: 'a', info: 'x'.repeat(4000) }
  t.equal((await app.inject({ url: '/comet/subscribe?subscribed[room]=0&wait=0' })).statusCode, 200, '4096 bytes of info are fine')
  result = { id: 'b' }
  t.equal((await app.inject({ url: '/comet/subscribe?subscribed[room]=0&wait=0' })).statusCode, 200, 'info may be left out')
  t.same((await app.comet.presence('room')).members.map(m => m.info), ['x'.repeat(4000), null], 'and is then null')
})

t.test('an error the hook throws keeps its statusCode, as an authorizer\'s does', async t => {
  const { app } = await loggedApp(t, { ...fast, presence: () => { throw Object.assign(new Error('log in first'), { statusCode: 401 }) } })
  const response = await app.inject({ url: '/comet/subscribe?subscribed[room]=0' })
  t.equal(response.statusCode, 401)
  t.equal(response.headers['cache-control'], 'no-store')

  // An answer begun for one channel that rejects after another channel's threw is not left unhandled.
  const { app: mixed } = await loggedApp(t, {
    ...fast,
    presence: async (_request, channel) => channel === 'first'
      ? await Promise.reject(new Error('too late to matter'))
      : await Promise.resolve(null)
  })
  const { app: throwing } = await loggedApp(t, {
    ...fast,
    presence: (_request, channel) => {
      if (channel === 'first') return Promise.reject(Object.assign(new Error('first'), { statusCode: 401 }))
      throw Object.assign(new Error('second'), { statusCode: 403 })
    }
  })
  t.equal((await mixed.inject({ url: '/comet/subscribe?subscribed[first]=0&subscribed[second]=0' })).statusCode, 500)
  const both = await throwing.inject({ url: '/comet/subscribe?subscribed[first]=0&subscribed[second]=0' })
  t.equal(both.statusCode, 403, 'the error thrown at once')
  await sleep(10)
})

t.test('presence options are checked at registration', async t => {
  const cases: Array<[CometOptions, string]> = [
    [{ presenceGrace: 5 }, 'option "presenceGrace" must be left out without the presence option'],
    [{ presenceEvents: true }, 'option "presenceEvents" must be left out without the presence option'],
    [{ presenceMaxMembers: 5 }, 'option "presenceMaxMembers" must be left out'],
    [{ presence: 'yes' as never }, 'option "presence" must be a function (request, channel) => ({ id, info }) or null (got "yes")'],
    [{ presence: memberFromHeader, presenceGrace: 0 }, 'option "presenceGrace" must be a positive number of seconds (got 0)'],
    [{ presence: memberFromHeader, presenceGrace: 3e6 }, 'option "presenceGrace" must be at most 24 days'],
    [{ presence: memberFromHeader, presenceEvents: 'yes' as never }, 'option "presenceEvents" must be true, false or a function'],
    [{ presence: memberFromHeader, presenceMaxMembers: 0 }, 'option "presenceMaxMembers" must be a positive integer (got 0)']
  ]
  for (const [options, message] of cases) {
    const app = Fastify()
    await t.rejects(async () => { await app.register(comet, options).ready() }, { code: 'FST_COMET_INVALID_OPTION', message: new RegExp(message.replace(/[()]/g, '\\$&')) }, message)
    await app.close()
  }
  const memory = new MemoryEngine()
  const { presenceStore: _, ...withoutPresence } = Object.fromEntries(['publish', 'read', 'watch', 'unwatch', 'channelCount', 'close'].map(m => [m, (memory as any)[m].bind(memory)]))
  const app = Fastify()
  await t.rejects(async () => { await app.register(comet, { engine: withoutPresence as unknown as CometEngine, presence: memberFromHeader }).ready() }, { code: 'FST_COMET_INVALID_OPTION', message: /option "presence" must be left out with an engine that has no presenceStore\(\)/ })
  await app.close()
  await memory.close()
})

t.test('presenceGrace defaults to tries × sleep, and at least 10 seconds', async t => {
  const { resolveOptions } = await import('../lib/options.js')
  t.equal(resolveOptions({ presence: memberFromHeader }).presence?.graceMs, 40_000)
  t.equal(resolveOptions({ presence: memberFromHeader, tries: 1, sleep: 1 }).presence?.graceMs, 10_000)
  t.equal(resolveOptions({ presence: memberFromHeader, presenceGrace: 0.5 }).presence?.refreshMs, 125, 'written four times per grace period')
  t.equal(resolveOptions({}).presence, undefined)
})

t.test('without the presence option, fastify.comet.presence() says how to turn it on', async t => {
  const { app, origin } = await serve(t, {})
  await t.rejects(app.comet.presence('room'), { code: 'FST_COMET_PRESENCE_OFF', message: /set the presence option/ })
  t.equal((await fetch(`${origin}/comet/presence/room`)).status, 404, 'and there is no presence route')
  await t.resolves(app.comet.publish('room@presence', 1), '@presence is an ordinary name then')
})
