// The Redis engine tells the server's log of its connection, through the plugin's logger: Redis
// unreachable at start, the connection lost, the connection back. One line per change, however
// many retries, and the URL without its password.
import Fastify, { type FastifyInstance } from 'fastify'
import { Cluster, Redis } from 'ioredis'
import t, { type Test } from 'tap'
import comet, { type EngineLogger } from '../plugin.js'
import { RedisEngine } from '../lib/engines/redis/index.js'
import { ConnectionLog, describeRedis } from '../lib/engines/redis/connection-log.js'
import { eventually } from './helpers.js'
import { startRedis } from './redis-server.js'

interface LogLine {
  level: number
  msg: string
  redis?: string
  reason?: string
  downMs?: number
}

const error = 50
const info = 30

/** A server with the plugin on `engine`, whose log lines are kept in `lines`. */
async function serveLogged (t: Test, engine: RedisEngine): Promise<{ app: FastifyInstance, lines: LogLine[] }> {
  const lines: LogLine[] = []
  const app = Fastify({ logger: { level: 'info', stream: { write: (line: string) => { lines.push(JSON.parse(line) as LogLine) } } } })
  t.teardown(() => app.close())
  await app.register(comet, { engine })
  await app.ready()
  return { app, lines }
}

/** The plugin's lines about Redis. */
function redisLines (lines: readonly LogLine[]): LogLine[] {
  return lines.filter(line => line.msg.startsWith('fastify-comet:') && line.redis !== undefined)
}

/** A client of the user's that retries every 20 ms, counting its attempts. */
function fastRetryingClient (t: Test, url: string): { client: Redis, attempts: () => number } {
  let attempts = 0
  const client = new Redis(url, { retryStrategy: () => 20, enableOfflineQueue: false, autoResendUnfulfilledCommands: false })
  client.on('error', () => {})
  client.on('reconnecting', () => { attempts++ })
  t.teardown(() => client.disconnect())
  return { client, attempts: () => attempts }
}

t.test('Redis unreachable at start, up, lost, back: one line for each change, however many retries', async t => {
  const redis = await startRedis(t)
  await redis.shutdown()
  const { client, attempts } = fastRetryingClient(t, redis.url)
  const engine = new RedisEngine({ redis: client })
  t.teardown(() => engine.close())
  const { lines } = await serveLogged(t, engine)
  const where = `redis://127.0.0.1:${redis.port}`

  await eventually(() => redisLines(lines).length === 1 && attempts() >= 5, 5000)
  t.match(redisLines(lines), [{
    level: error,
    redis: where,
    reason: /ECONNREFUSED/,
    msg: `fastify-comet: cannot connect to Redis at ${where} (connect ECONNREFUSED 127.0.0.1:${redis.port}); publishes and polls get 503 until it can, and the engine keeps trying`
  }], 'one line at once, not one per retry')

  await redis.start()
  await eventually(() => redisLines(lines).length === 2, 5000)
  t.match(redisLines(lines)[1], { level: info, redis: where, downMs: Number, msg: new RegExp(`^fastify-comet: connected to Redis at ${where}, \\d+\\.\\d s after the first try$`) })

  const before = attempts()
  await redis.shutdown()
  await eventually(() => redisLines(lines).length === 3 && attempts() >= before + 5, 5000)
  t.match(redisLines(lines)[2], { level: error, redis: where, msg: new RegExp(`^fastify-comet: lost the connection to Redis at ${where} \\(.+\\); publishes and polls get 503 until it is back, and the engine keeps trying$`) })

  await redis.start()
  await eventually(() => redisLines(lines).length === 4, 5000)
  t.match(redisLines(lines)[3], { level: info, redis: where, downMs: Number, msg: new RegExp(`^fastify-comet: the connection to Redis at ${where} is back, after \\d+\\.\\d s down$`) })
  t.equal(redisLines(lines).length, 4, 'nothing else')
})

t.test('an engine from a URL with a password: the log names Redis without it', async t => {
  const redis = await startRedis(t)
  const deadPort = await redis.freePort()
  const engine = new RedisEngine({ redis: `redis://me:s3cret@127.0.0.1:${deadPort}/2` })
  t.teardown(() => engine.close())
  const { lines } = await serveLogged(t, engine)
  await eventually(() => redisLines(lines).length === 1, 5000)
  t.match(redisLines(lines), [{ level: error, redis: `redis://me@127.0.0.1:${deadPort}/2`, msg: new RegExp(`cannot connect to Redis at redis://me@127\\.0\\.0\\.1:${deadPort}/2 \\(.*ECONNREFUSED`) }])
  t.notOk(JSON.stringify(lines).includes('s3cret'), 'no line has the password')
})

t.test('a logger attached while Redis is down is told at once; the plugin stops telling its server\'s log at close', async t => {
  const redis = await startRedis(t)
  await redis.shutdown()
  const early: Array<[string, object, string]> = []
  const earlyLogger: EngineLogger = {
    error: (fields, message) => { early.push(['error', fields, message]) },
    info: (fields, message) => { early.push(['info', fields, message]) }
  }
  const engine = new RedisEngine({ redis: redis.url })
  t.teardown(() => engine.close())
  engine.attachLogger(earlyLogger)
  await eventually(() => early.length === 1, 5000)

  const { app, lines } = await serveLogged(t, engine)
  t.match(redisLines(lines), [{ level: error, msg: /cannot connect to Redis/ }], 'the server registered after the failure is told too')

  await app.close()
  await redis.start()
  await eventually(() => early.length === 2, 5000)
  t.match(early[1], ['info', { redis: redis.url }, /connected to Redis/])
  t.equal(redisLines(lines).length, 1, 'a closed server is told nothing more')
})

t.test('where Redis is, for the log: a URL without its password, or the address of a client', async t => {
  t.equal(describeRedis('redis://:pw@127.0.0.1:6380'), 'redis://127.0.0.1:6380')
  t.equal(describeRedis('rediss://user:pw@example.com:6380/3'), 'rediss://user@example.com:6380/3')
  t.equal(describeRedis('redis://user:p%40w@[::1'), 'redis://user@[::1', 'a URL that does not parse loses its password too')
  const clients = [
    new Redis({ lazyConnect: true, host: '10.0.0.1', port: 6390, db: 4, password: 'pw' }),
    new Redis({ lazyConnect: true, tls: {} }),
    new Redis({ lazyConnect: true, path: '/tmp/redis.sock' })
  ]
  t.same(clients.map(describeRedis), ['redis://10.0.0.1:6390/4', 'rediss://localhost:6379', 'unix:/tmp/redis.sock'])
  const cluster = new Cluster(['redis://:pw@10.0.0.1:7000', 7001, { host: '10.0.0.3', port: 7002 }, {}], { lazyConnect: true })
  t.equal(describeRedis(cluster), 'the Redis Cluster of redis://10.0.0.1:7000, localhost:7001, 10.0.0.3:7002, localhost:6379')
  t.equal(describeRedis({ isCluster: true } as unknown as Cluster), 'the Redis Cluster', 'if ioredis keeps its nodes elsewhere one day')
})

t.test('the lines, on a fake clock: the reason of the failure, and how long it lasted', async t => {
  let nowMs = 1000
  const told: string[] = []
  const log = new ConnectionLog('redis://here:1', () => nowMs)
  log.attach({ error: (_fields, message) => { told.push(message) }, info: (_fields, message) => { told.push(message) } })
  log.onUp()
  t.same(told, [], 'nothing when the first connection is made')
  nowMs = 5000
  log.onDown()
  log.onDown()
  nowMs = 7500
  log.onUp()
  log.onError(Object.assign(new AggregateError([], ''), { code: 'ECONNREFUSED' }))
  log.onDown()
  log.onUp()
  log.onError(new AggregateError([], ''))
  log.onDown()
  t.same(told, [
    'fastify-comet: lost the connection to Redis at redis://here:1 (the connection closed); publishes and polls get 503 until it is back, and the engine keeps trying',
    'fastify-comet: the connection to Redis at redis://here:1 is back, after 2.5 s down',
    'fastify-comet: lost the connection to Redis at redis://here:1 (ECONNREFUSED); publishes and polls get 503 until it is back, and the engine keeps trying',
    'fastify-comet: the connection to Redis at redis://here:1 is back, after 0.0 s down',
    'fastify-comet: lost the connection to Redis at redis://here:1 (AggregateError); publishes and polls get 503 until it is back, and the engine keeps trying'
  ])
})
