// The engine contract, and what is particular to the Redis engine (cursors, options, keys), on a
// private redis-server.
import { once } from 'node:events'
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import { fromNow, fromOldest, type ChannelWatcher } from '../plugin.js'
import { RedisEngine, type RedisEngineOptions } from '../lib/engines/redis/index.js'
import { engineContract } from './engine-contract.js'
import { eventually, sleep } from './helpers.js'
import { startRedis } from './redis-server.js'

const redis = await startRedis(t)
let engines = 0
// A prefix per engine: the contract's tests reuse channel names, and each expects a fresh store.
const prefix = (): string => `contract${engines++}:`

engineContract(t, 'RedisEngine', options => new RedisEngine({ redis: redis.url, keyPrefix: prefix(), ...options }))

function engineFor (t: Test, options: Partial<RedisEngineOptions> = {}): RedisEngine {
  const engine = new RedisEngine({ redis: redis.url, keyPrefix: prefix(), ...options })
  t.teardown(() => engine.close())
  return engine
}

function recorder (): ChannelWatcher & { seen: string[] } {
  const seen: string[] = []
  return { seen, notify: channel => { seen.push(channel) } }
}

t.test('bad options throw coded errors at construction', async t => {
  const cases: Array<[string, unknown]> = [
    ['redis', undefined],
    ['redis', 'http://127.0.0.1:6379'],
    ['redis', { connect () {} }],
    ['historySize', 0],
    ['historySize', 1.5],
    ['historyTtl', Infinity],
    ['historyTtl', -1],
    ['keyPrefix', 'a{b}:'],
    ['keyPrefix', 'x'.repeat(65)],
    ['keyPrefix', 7],
    ['detectDataLoss', 'yes'],
    ['idempotencyWindow', 0],
    ['idempotencyWindow', Infinity],
    ['heartbeatInterval', 0],
    ['heartbeatInterval', 3601],
    ['heartbeatInterval', '1']
  ]
  for (const [name, value] of cases) {
    const options = { redis: redis.url, [name]: value } as unknown as RedisEngineOptions
    t.throws(() => new RedisEngine(options), { code: 'FST_COMET_INVALID_OPTION', message: new RegExp(`^fastify-comet: option "${name}"`) }, `${name}: ${String(value)}`)
  }
  t.throws(() => new RedisEngine({ redis: redis.url, historysize: 10 } as unknown as RedisEngineOptions), { code: 'FST_COMET_UNKNOWN_OPTION', message: /"historysize"; the options are redis, historySize/ })
  t.throws(() => new RedisEngine(undefined as unknown as RedisEngineOptions), { code: 'FST_COMET_INVALID_OPTION', message: /option "options"/ })
})

t.test('cursors are an epoch and an offset; another engine kind\'s cursor is a 400, another epoch\'s a gap', async t => {
  const engine = engineFor(t)
  const first = await engine.publish('room', '1')
  t.match(first, /^[A-Za-z0-9_-]{12}\.1$/)
  const second = await engine.publish('room', '2')
  t.equal(second, `${first.split('.')[0] as string}.2`, 'the next offset, same epoch')
  await t.rejects(async () => engine.read('room', 'AAAAAAAA.lx2b9c.1', 10), { statusCode: 400, code: 'FST_COMET_INVALID_CURSOR' }, "the memory engine's cursor")
  await t.rejects(async () => engine.read('room', 'AAAAAAAAAAAA.01', 10), { code: 'FST_COMET_INVALID_CURSOR' }, 'a leading zero')
  const other = await engine.read('room', 'AAAAAAAAAAAA.1', 10)
  t.same(other.events.map(e => e.json), ['1', '2'])
  t.equal(other.gap, true, 'an epoch this channel never had')
  const future = await engine.read('room', `${first.split('.')[0] as string}.9`, 10)
  t.same([future.events.length, future.gap, future.next], [2, true, second], 'an offset beyond the top: Redis lost data since, so everything held, with a gap')
})

t.test('every key the engine writes is under keyPrefix and expires', async t => {
  const admin = redis.admin()
  const engine = engineFor(t, { keyPrefix: 'keys-test:', historyTtl: 60 })
  await engine.publish('room', '1')
  await engine.read('quiet', fromNow, 10)
  await engine.read('room', fromOldest, 10)
  const keys = (await admin.keys('*')).filter(key => !key.startsWith('contract')).sort()
  t.same(keys, ['keys-test:{quiet}:m', 'keys-test:{room}:m', 'keys-test:{room}:s'])
  for (const key of keys) {
    const ttl = await admin.pttl(key)
    t.ok(ttl > 0 && ttl <= 60_000, `${key} expires (${ttl} ms)`)
  }
})

t.test('an event older than historyTtl is no longer held, and a cursor before it gets a gap, as with the memory engine', async t => {
  const engine = engineFor(t, { historyTtl: 0.4 })
  const first = await engine.publish('room', '1')
  await sleep(250)
  await engine.publish('room', '2')
  await sleep(200)
  const backlog = await engine.read('room', first, 10)
  t.same(backlog.events.map(e => e.json), ['2'], 'the first event expired')
  t.equal(backlog.gap, false, 'the cursor was that very event, so nothing after it was lost')
  t.same((await engine.read('room', fromOldest, 10)).events.map(e => e.json), ['2'])
  await sleep(250)
  const later = await engine.read('room', first, 10)
  t.same([later.events, later.gap], [[], true], 'now the event after the cursor expired too')
  const caughtUp = await engine.read('room', later.next, 10)
  t.same([caughtUp.events, caughtUp.gap], [[], false], 'the next cursor is at the top')
})

t.test('a quiet channel read within historyTtl keeps its cursor valid; one left longer gets a gap', async t => {
  const engine = engineFor(t, { historyTtl: 0.3 })
  let cursor = (await engine.read('quiet', fromNow, 10)).next
  for (let i = 0; i < 3; i++) {
    await sleep(150)
    const backlog = await engine.read('quiet', cursor, 10)
    t.equal(backlog.gap, false, `read ${i + 1}: reads keep the channel's meta alive`)
    cursor = backlog.next
  }
  await sleep(450)
  t.equal((await engine.read('quiet', cursor, 10)).gap, true, 'the meta expired: what came meanwhile is unknown')
})

t.test('a notification answers the polls it wakes without reading Redis; a big event is read back', async t => {
  const engine = engineFor(t)
  const watcher = recorder()
  await engine.watch('room', watcher)
  const now = await engine.read('room', fromNow, 10)
  const id = await engine.publish('room', '"small"')
  await eventually(() => watcher.seen.length === 1)
  const fromCache = engine.read('room', now.next, 10)
  t.same(fromCache, { events: [{ id, json: '"small"' }], next: id, gap: false }, 'answered synchronously')
  t.same(engine.read('room', id, 10), { events: [], next: id, gap: false }, 'and at the top, nothing newer')

  const big = JSON.stringify('x'.repeat(20_000))
  const bigId = await engine.publish('room', big)
  await eventually(() => watcher.seen.length === 2)
  const readBack = engine.read('room', id, 10)
  t.ok(readBack instanceof Promise, 'the notification did not carry it')
  t.same(await readBack, { events: [{ id: bigId, json: big }], next: bigId, gap: false })
})

t.test('a notification answers reads only while the channel\'s keys are surely alive', async t => {
  const engine = engineFor(t, { historyTtl: 0.2 })
  const watcher = recorder()
  await engine.watch('room', watcher)
  const id = await engine.publish('room', '1')
  await eventually(() => watcher.seen.length === 1)
  await sleep(120)
  t.ok(engine.read('room', id, 10) instanceof Promise, 'past half of historyTtl, Redis is asked (which keeps the meta alive)')
})

t.test('one subscription per channel however many watchers, dropped a while after the last leaves', async t => {
  const admin = redis.admin()
  const engine = engineFor(t, { keyPrefix: 'subs-test:' })
  const watchers = [recorder(), recorder(), recorder()]
  await Promise.all(watchers.map(w => engine.watch('room', w)))
  t.same(await admin.call('PUBSUB', 'SHARDNUMSUB', 'subs-test:{room}:n'), ['subs-test:{room}:n', 1])
  for (const w of watchers) engine.unwatch('room', w)
  engine.unwatch('room', watchers[0] as ChannelWatcher)
  t.equal(engine.watch('room', watchers[0] as ChannelWatcher), undefined, 'a watcher coming back at once finds the subscription')
  engine.unwatch('room', watchers[0] as ChannelWatcher)
  await eventually(async () => (await admin.call('PUBSUB', 'SHARDNUMSUB', 'subs-test:{room}:n') as [string, number])[1] === 0, 3000)
  t.pass('unsubscribed once nobody came back')
  const again = recorder()
  await engine.watch('room', again)
  await engine.publish('room', '1')
  await eventually(() => again.seen.length === 1)
  t.pass('and subscribed again for a new watcher')
})

t.test('a client passed in stays open when the engine closes; its own subscription connection does not', async t => {
  const client = new Redis(redis.url)
  t.teardown(() => client.disconnect())
  const admin = redis.admin()
  const engine = new RedisEngine({ redis: client, keyPrefix: prefix() })
  const watcher = recorder()
  await engine.watch('room', watcher)
  await engine.publish('room', '1')
  await eventually(() => watcher.seen.length === 1)
  t.same(engine.health(), { connected: true, reconnections: 0, healedNotifications: 0 })
  const clientsBefore = (await admin.client('LIST') as string).trim().split('\n').length
  await engine.close()
  await engine.close()
  t.equal(await client.ping(), 'PONG', 'the client still works')
  await eventually(async () => (await admin.client('LIST') as string).trim().split('\n').length === clientsBefore - 1)
  t.pass('one connection fewer: the subscriber')
  await t.rejects(engine.publish('room', '2'), { code: 'FST_COMET_CLOSED' })
  t.throws(() => engine.read('room', fromNow, 10), { code: 'FST_COMET_CLOSED' })
})

t.test('with detectDataLoss off, the scripts do not ask for the run_id', async t => {
  const engine = engineFor(t, { detectDataLoss: false })
  const id = await engine.publish('room', '1')
  t.same((await engine.read('room', fromOldest, 10)).events.map(e => e.id), [id])
})

t.test('a Redis that cannot be reached: commands fail at once with 503 FST_COMET_ENGINE_UNAVAILABLE', async t => {
  const closedPort = await redis.freePort()
  const engine = new RedisEngine({ redis: `redis://127.0.0.1:${closedPort}` })
  t.teardown(() => engine.close())
  await t.rejects(engine.publish('room', '1'), { code: 'FST_COMET_ENGINE_UNAVAILABLE', statusCode: 503 }, 'before the first connection')
  await t.rejects(async () => engine.read('room', fromNow, 10), { code: 'FST_COMET_ENGINE_UNAVAILABLE' }, 'and after it failed')
  await t.rejects(async () => engine.watch('room', recorder()), { code: 'FST_COMET_ENGINE_UNAVAILABLE' })
  t.equal(engine.health().connected, false)
})

t.test('a Redis error (a key of another type under the prefix) is a 503, and the engine carries on', async t => {
  const admin = redis.admin()
  const engine = engineFor(t, { keyPrefix: 'clash:' })
  await admin.set('clash:{room}:m', 'not a hash')
  await t.rejects(engine.publish('room', '1'), { code: 'FST_COMET_ENGINE_UNAVAILABLE', message: /WRONGTYPE/ })
  await t.rejects(async () => engine.read('room', fromNow, 10), { code: 'FST_COMET_ENGINE_UNAVAILABLE' })
  t.match(await engine.publish('other', '1'), /\.1$/)
})

t.test('a command under way when the connection drops fails at once; the engine reconnects and heals', async t => {
  const client = new Redis(redis.url)
  client.on('error', () => {})
  t.teardown(() => client.disconnect())
  const engine = new RedisEngine({ redis: client, keyPrefix: prefix() })
  t.teardown(() => engine.close())
  await engine.publish('room', '1')
  const publishing = engine.publish('room', '2')
  // Abruptly, so that no reply can still be read.
  ;(client as unknown as { stream: { destroy: () => void } }).stream.destroy()
  await t.rejects(publishing, { code: 'FST_COMET_ENGINE_UNAVAILABLE', message: /the connection to Redis dropped/ })
  await eventually(() => client.status === 'ready')
  t.match(await engine.publish('room', '3'), /\.\d+$/, 'publishes again once the client is back')
})

t.test('channels published on count for historyTtl, then are forgotten', async t => {
  const engine = engineFor(t, { historyTtl: 0.1 })
  await engine.publish('room', '1')
  t.equal(engine.channelCount(), 1)
  await sleep(150)
  t.equal(engine.channelCount(), 0)
})

t.test('watching on a closed engine is refused', async t => {
  const engine = new RedisEngine({ redis: redis.url, keyPrefix: prefix() })
  await engine.close()
  await t.rejects(async () => engine.watch('room', recorder()), { code: 'FST_COMET_CLOSED' })
})

t.test('a keyed publish on a closed engine is refused', async t => {
  const engine = new RedisEngine({ redis: redis.url, keyPrefix: prefix() })
  await engine.close()
  await t.rejects(engine.publishIdempotent('room', '1', 'k'), { code: 'FST_COMET_CLOSED' })
})

/**
 * An engine on a client of the test's own, with its connections in the test's hands: the
 * subscription connection drops when told and connects again only when let, and the reads a heal
 * makes of a channel's top (the only reads from "now" for one event) can be held and are counted.
 */
async function engineInHand (t: Test) {
  const client = new Redis(redis.url)
  client.on('error', () => {})
  t.teardown(() => client.disconnect())
  let subscriber: Redis | undefined
  const duplicate = client.duplicate.bind(client)
  client.duplicate = ((override?: Parameters<Redis['duplicate']>[0]) => (subscriber = duplicate(override))) as Redis['duplicate']

  const commands = client as unknown as { evalsha: (...args: unknown[]) => Promise<unknown> }
  const evalsha = commands.evalsha.bind(client)
  let held: Promise<void> | undefined
  const healReads = { started: 0, done: 0 }
  commands.evalsha = async (...args: unknown[]) => {
    // EVALSHA sha 2 <meta> <stream> <epoch> <detectDataLoss> <historyTtl> 'now' '' <limit>
    if (args[7] !== 'now' || args[9] !== 1) return await evalsha(...args)
    healReads.started++
    const gate = held
    held = undefined
    await gate
    const result = await evalsha(...args)
    healReads.done++
    return result
  }

  const engine = new RedisEngine({ redis: client, keyPrefix: prefix() })
  t.teardown(() => engine.close())
  await eventually(() => engine.health().connected)
  // The scripts are in Redis's cache, so every read is one EVALSHA.
  await engine.publish('warm-up', '0')
  const connection = subscriber as Redis
  let letConnect: (() => void) | undefined
  const connect = connection.connect.bind(connection)
  connection.connect = async () => {
    await new Promise<void>(resolve => { letConnect = resolve })
    await connect()
  }

  return {
    engine,
    healReads,
    async dropSubscriber (): Promise<void> {
      const closed = once(connection, 'close')
      connection.stream.destroy()
      await closed
    },
    async reconnectSubscriber (): Promise<void> {
      await eventually(() => letConnect !== undefined)
      const ready = once(connection, 'ready')
      ;(letConnect as () => void)()
      letConnect = undefined
      await ready
    },
    /** Holds the next heal's read until the returned function is called. */
    holdNextHealRead (): () => void {
      let release: () => void = () => {}
      held = new Promise(resolve => { release = resolve })
      return release
    },
    /** Resolves once `count` heal reads have been answered and what follows them in the heal has run. */
    async healReadsDone (count: number): Promise<void> {
      await eventually(() => healReads.done >= count)
      await new Promise(resolve => setImmediate(resolve))
    }
  }
}

t.test('the heal after a reconnection subscribes again: a publish after it reaches a watcher that waited through the drop', async t => {
  const { engine, dropSubscriber, reconnectSubscriber, healReadsDone } = await engineInHand(t)
  const watcher = recorder()
  await engine.watch('room', watcher)
  await engine.read('room', fromNow, 10)
  await dropSubscriber()
  await reconnectSubscriber()
  await healReadsDone(1)
  t.same(watcher.seen, [], 'the channel did not move: nobody woken')
  await engine.publish('room', '1')
  await eventually(() => watcher.seen.length === 1, 1000)
  t.same(engine.health(), { connected: true, reconnections: 1, healedNotifications: 0 })
})

t.test('a drop during a heal leaves the heal to the next reconnection', async t => {
  const { engine, dropSubscriber, reconnectSubscriber, holdNextHealRead, healReads, healReadsDone } = await engineInHand(t)
  const watcher = recorder()
  await engine.watch('room', watcher)
  await engine.read('room', fromNow, 10)
  const release = holdNextHealRead()
  await dropSubscriber()
  await reconnectSubscriber()
  await eventually(() => healReads.started === 1)
  await dropSubscriber()
  release()
  await healReadsDone(1)
  t.same(watcher.seen, [], 'the first heal found the channel where it was')
  // Nobody hears it: the subscription connection is down.
  await engine.publish('room', 'during the second drop')
  await reconnectSubscriber()
  await eventually(() => watcher.seen.length === 1, 1000)
  t.equal(engine.health().healedNotifications, 1, 'woken by the second heal')
})

t.test('two heals in a row: the second finds the top the first recorded, and wakes nobody', async t => {
  const { engine, dropSubscriber, reconnectSubscriber, healReadsDone } = await engineInHand(t)
  const watcher = recorder()
  await engine.watch('room', watcher)
  await engine.read('room', fromNow, 10)
  await dropSubscriber()
  await engine.publish('room', 'during the drop')
  await reconnectSubscriber()
  await healReadsDone(1)
  t.same([watcher.seen, engine.health().healedNotifications], [['room'], 1], 'the first heal wakes the watcher')
  await dropSubscriber()
  await reconnectSubscriber()
  await healReadsDone(2)
  t.same([watcher.seen, engine.health().healedNotifications], [['room'], 1], 'nothing moved since')
})

t.test('the newest notification does not answer reads once the subscription dropped', async t => {
  const { engine, dropSubscriber } = await engineInHand(t)
  const watcher = recorder()
  await engine.watch('room', watcher)
  await engine.read('room', fromNow, 10)
  const first = await engine.publish('room', '1')
  await eventually(() => watcher.seen.length === 1)
  t.same(engine.read('room', first, 10), { events: [], next: first, gap: false }, 'answered from the notification')
  await dropSubscriber()
  const second = await engine.publish('room', '2')
  const read = engine.read('room', first, 10)
  t.ok(read instanceof Promise, 'Redis is asked')
  t.same((await read).events.map(e => e.id), [second], 'and has the event published during the drop')
})

t.test('an event of exactly 16 KiB of JSON travels in its notification; one byte more is read back', async t => {
  const engine = engineFor(t)
  const watcher = recorder()
  await engine.watch('room', watcher)
  const now = await engine.read('room', fromNow, 10)
  const exactly = JSON.stringify('x'.repeat(16 * 1024 - 2))
  const id = await engine.publish('room', exactly)
  await eventually(() => watcher.seen.length === 1)
  t.same(engine.read('room', now.next, 10), { events: [{ id, json: exactly }], next: id, gap: false }, 'answered synchronously')
  const over = JSON.stringify('x'.repeat(16 * 1024 - 1))
  const overId = await engine.publish('room', over)
  await eventually(() => watcher.seen.length === 2)
  const readBack = engine.read('room', id, 10)
  t.ok(readBack instanceof Promise, 'the notification did not carry it')
  t.same(await readBack, { events: [{ id: overId, json: over }], next: overId, gap: false })
})
