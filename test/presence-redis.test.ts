// Presence on several processes sharing one Redis: members counted once across processes, each
// join and leave told once although every process purges, a process killed with SIGKILL whose
// members leave after the grace period, writes batched rather than one per poll, keys that expire.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { Writable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import Fastify from 'fastify'
import { Cluster } from 'ioredis'
import t, { type Test } from 'tap'
import comet, { type CometOptions, type PresenceStore } from '../plugin.js'
import { RedisEngine } from '../lib/engines/redis/index.js'
import { closeServer, eventually, outsideTap, serve, sleep, type Served } from './helpers.js'
import { idsOf, memberFromHeader, MemberList, pollAs } from './presence-helpers.js'
import { startRedis } from './redis-server.js'

const redis = await startRedis(t)
let prefixes = 0
const repoRoot = fileURLToPath(new URL('..', import.meta.url))

const fast = { tries: 1, sleep: 0.1, presenceGrace: 0.5, presenceEvents: true, presence: memberFromHeader } satisfies CometOptions

interface OnRedis extends Served {
  engine: RedisEngine
  /** Calls of the presence store's refresh, with how many members each carried. */
  writes: number[]
}

/** A server on the shared Redis under `keyPrefix`, its presence writes counted. */
async function serveOnRedis (t: Test, keyPrefix: string, options: CometOptions = fast): Promise<OnRedis> {
  const engine = new RedisEngine({ redis: redis.url, keyPrefix })
  t.teardown(() => engine.close())
  const writes: number[] = []
  const makeStore = engine.presenceStore.bind(engine)
  engine.presenceStore = storeOptions => {
    const store = makeStore(storeOptions)
    return {
      refresh: async (channel, entries, events) => {
        writes.push(entries.length)
        await store.refresh(channel, entries, events)
      },
      snapshot: async (channel, limit, events) => await store.snapshot(channel, limit, events)
    } satisfies PresenceStore
  }
  return { ...await serve(t, { engine, ...options }), engine, writes }
}

t.test('members on two processes are counted once by identity, and each join and leave is told once', async t => {
  const keyPrefix = `p${prefixes++}:`
  const a = await serveOnRedis(t, keyPrefix)
  const b = await serveOnRedis(t, keyPrefix)
  const page = new MemberList('room', await a.app.comet.presence('room'))
  const hangUp = new AbortController()
  // Alice on both processes (two devices), Bob on B; a reader of the events on each process.
  const polls = [pollAs(a.origin, 'alice', ['room'], hangUp.signal), pollAs(b.origin, 'alice', ['room'], hangUp.signal), pollAs(b.origin, 'bob', ['room'], hangUp.signal)]
    .map(async poll => await poll.catch(() => undefined))
  const readers = [a, b].map(async s => await fetch(`${s.origin}/comet/subscribe?subscribed[room@presence]=0`, { signal: hangUp.signal }).catch(() => undefined))
  await eventually(async () => (await b.app.comet.presence('room')).count === 2)
  const [onA, onB] = await Promise.all([a.app.comet.presence('room'), b.app.comet.presence('room')])
  t.same(idsOf(onA), ['alice', 'bob'])
  t.same(onA, onB, 'the same snapshot from either process')
  t.same(onA.members.find(m => m.id === 'alice')?.info, { name: 'ALICE' })
  hangUp.abort()
  await Promise.all([...polls, ...readers])
  await eventually(async () => (await a.app.comet.presence('room')).count === 0, 3000)
  // Both processes purge the channel for a while: still one leave each.
  await sleep(600)
  await page.catchUp(a.origin)
  t.same(page.events.map(e => `${e.type} ${e.id}`).sort(), ['join alice', 'join bob', 'leave alice', 'leave bob'])
  t.equal(page.gaps, 0)
  const admin = redis.admin()
  t.same(await admin.keys(`${keyPrefix}{room@presence}:p*`), [], 'no member keys are left once the last member left')
})

t.test('a member polling again and again is written per refresh interval, not per poll', async t => {
  const keyPrefix = `p${prefixes++}:`
  const a = await serveOnRedis(t, keyPrefix, { ...fast, presenceGrace: 20, presenceEvents: false })
  for (let i = 0; i < 20; i++) await fetch(`${a.origin}/comet/subscribe?subscribed[room]=0&subscribed[lobby]=0&wait=0`, { headers: { 'x-user': 'alice' } })
  t.same(await a.app.comet.presence('room'), { count: 1, members: [{ id: 'alice', info: { name: 'ALICE' }, since: (await a.app.comet.presence('room')).members[0]?.since }] }, 'without presenceEvents, no cursor')
  t.ok(a.writes.length <= 2, `20 polls on 2 channels: ${a.writes.length} writes, one per channel when the member came`)
  const admin = redis.admin()
  const ttl = await admin.pttl(`${keyPrefix}{room@presence}:pe`)
  t.ok(ttl > 20_000 && ttl <= 40_000, `the member keys expire a grace period after the last member would (${ttl} ms)`)
  t.same(await admin.keys(`${keyPrefix}{room@presence}:[ms]`), [], 'and without presenceEvents there is no stream of joins and leaves')
})

t.test('the members of a process killed with SIGKILL leave after the grace period, once', async t => {
  const keyPrefix = `p${prefixes++}:`
  const grace = 2
  const a = await serveOnRedis(t, keyPrefix, { ...fast, presenceGrace: grace })
  const child = spawn(...outsideTap(process.execPath, ['--import=tsx', 'test/fixtures/presence-server.ts']), {
    cwd: repoRoot,
    env: { ...process.env, REDIS_URL: redis.url, KEY_PREFIX: keyPrefix, PRESENCE_GRACE: String(grace) },
    stdio: ['ignore', 'pipe', 'inherit']
  })
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  let output = ''
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString()
      if (/listening \d+/.test(output)) resolve()
    })
    child.once('exit', code => reject(new Error(`the server exited (${code}) before it listened`)))
  })
  const origin = `http://127.0.0.1:${(/listening (\d+)/.exec(output) as RegExpExecArray)[1]}`
  const page = new MemberList('room', await a.app.comet.presence('room'))
  // Carol's poll waits on the child (100 s); Dan polls on A and stays.
  const carol = pollAs(origin, 'carol', ['room']).catch(() => 'cut')
  const dan = new AbortController()
  const danPoll = pollAs(a.origin, 'dan', ['room'], dan.signal).catch(() => undefined)
  await eventually(async () => (await a.app.comet.presence('room')).count === 2, 5000)
  const exited = once(child, 'exit')
  child.kill('SIGKILL')
  await exited
  const killedAt = Date.now()
  t.equal(await carol, 'cut')
  t.equal((await a.app.comet.presence('room')).count, 2, 'still there right after the crash: the grace period runs')
  // The bound only stops a broken test: the grace period, a refresh of A's, and room for a slow machine.
  await eventually(async () => idsOf(await a.app.comet.presence('room')).join() === 'dan', grace * 3000)
  t.pass(`Carol was gone ${Date.now() - killedAt} ms after the crash (grace period ${grace * 1000} ms)`)
  await page.catchUp(a.origin)
  t.same(page.events.filter(e => e.id === 'dan').map(e => e.type), ['join'], 'Dan, on the live process, stays')
  t.same(page.events.filter(e => e.id === 'carol').map(e => e.type), ['join', 'leave'], 'Carol joined once and left once')
  dan.abort()
  await danPoll
})

t.test('a write Redis does not take is logged at warn, and made again once Redis is back', async t => {
  const own = await startRedis(t)
  const logs: Array<Record<string, any>> = []
  const stream = new Writable({ write (chunk: Buffer, _encoding, done) { logs.push(JSON.parse(chunk.toString())); done() } })
  const app = Fastify({ logger: { level: 'warn', stream } })
  const engine = new RedisEngine({ redis: own.url })
  t.teardown(async () => {
    await closeServer(app)
    await engine.close()
  })
  await app.register(comet, { ...fast, tries: 100, engine, presenceGrace: 0.4 })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const origin = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
  const hangUp = new AbortController()
  const waiting = pollAs(origin, 'erin', ['room'], hangUp.signal).catch(() => undefined)
  await eventually(async () => (await app.comet.presence('room')).count === 1)
  await own.shutdown()
  await eventually(() => logs.some(l => /presence could not be written/.test(l.msg)), 3000)
  t.match(logs.find(l => /presence could not be written/.test(l.msg)), { level: 40, channel: 'room', err: { code: 'FST_COMET_ENGINE_UNAVAILABLE' } })
  await own.start()
  await eventually(async () => await app.comet.presence('room').then(s => s.count === 1, () => false), 5000)
  hangUp.abort()
  await waiting
})

t.test('on a Redis Cluster, every key and the notifications of a channel\'s presence are in one slot', async t => {
  const node = await startRedis(t, { cluster: true })
  const cluster = new Cluster([{ host: '127.0.0.1', port: node.port }])
  t.teardown(() => cluster.disconnect())
  const engine = new RedisEngine({ redis: cluster })
  t.teardown(() => engine.close())
  const { app, origin } = await serve(t, { ...fast, engine })
  const page = new MemberList('room', await app.comet.presence('room'))
  await pollAs(origin, 'fay', ['room'])
  t.same(idsOf(await app.comet.presence('room')), ['fay'])
  await eventually(async () => (await app.comet.presence('room')).count === 0, 3000)
  await page.catchUp(origin)
  t.same(page.events.map(e => `${e.type} ${e.id}`), ['join fay', 'leave fay'])
})
