// Errors that ask the client to come back later carry their Retry-After, so that any route that
// lets one through answers with the header: a route of the user's as well as the plugin's own.
import Fastify from 'fastify'
import t from 'tap'
import comet, { errors, fromNow, MemoryEngine } from '../plugin.js'
import { CometBus } from '../lib/bus/bus.js'
import { RedisEngine } from '../lib/engines/redis/index.js'
import { eventually, poll } from './helpers.js'
import { startRedis } from './redis-server.js'

t.test('a route of the user\'s calling fastify.comet.publish() while Redis is down answers 503 with Retry-After', async t => {
  const redis = await startRedis(t)
  const engine = new RedisEngine({ redis: redis.url })
  t.teardown(() => engine.close())
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(comet, { engine })
  app.post('/messages', async () => app.comet.publish('room', 'hello'))
  await app.ready()
  t.equal((await app.inject({ method: 'POST', url: '/messages' })).statusCode, 200, 'while Redis is up')

  await redis.shutdown()
  await eventually(() => !engine.health().connected)
  const refused = await app.inject({ method: 'POST', url: '/messages' })
  t.equal(refused.statusCode, 503)
  t.equal(refused.headers['retry-after'], '1')
  t.match(refused.json(), { statusCode: 503, code: 'FST_COMET_ENGINE_UNAVAILABLE', message: /retry after the Retry-After delay/ })
})

t.test('FST_COMET_ENGINE_UNAVAILABLE carries Retry-After whoever makes it, and does not show it when logged', async t => {
  const error = new errors.FST_COMET_ENGINE_UNAVAILABLE('an engine of a third party')
  t.same((error as unknown as { headers: unknown }).headers, { 'retry-after': '1' })
  t.notOk(Object.keys(error).includes('headers'), 'not enumerable: a logged error does not repeat it')
})

t.test('past maxPending the bus fails a poll with an error that carries Retry-After', async t => {
  const bus = new CometBus(new MemoryEngine(), { pollTimeoutMs: 30_000, maxPending: 1, retryAfterSeconds: 7, batchSize: 100, maxPayload: 1000 })
  t.teardown(() => bus.close())
  bus.poll(new Map([['a', fromNow]]))
  await t.rejects(bus.poll(new Map([['b', fromNow]])).reply, { code: 'FST_COMET_TOO_MANY_PENDING', headers: { 'retry-after': '7' } })

  const unconfigured = new CometBus(new MemoryEngine(), { pollTimeoutMs: 30_000, maxPending: 1, batchSize: 100, maxPayload: 1000 })
  t.teardown(() => unconfigured.close())
  unconfigured.poll(new Map([['a', fromNow]]))
  await t.rejects(unconfigured.poll(new Map([['b', fromNow]])).reply, { code: 'FST_COMET_TOO_MANY_PENDING', headers: { 'retry-after': '1' } }, 'a second by default')
})

t.test('the plugin\'s routes send Retry-After under an error handler of the user\'s that does not copy error.headers', async t => {
  const app = Fastify()
  app.setErrorHandler(async (error: { statusCode: number, code: string }, _request, reply) => reply.code(error.statusCode).send({ code: `mine: ${error.code}` }))
  await app.register(comet, { maxPending: 1, sleep: 3 })
  t.teardown(() => app.close())
  await app.listen({ port: 0, host: '127.0.0.1' })
  const origin = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
  const waiting = poll(origin, { a: '0' })
  await eventually(() => app.comet.stats().pending === 1)
  const refused = await poll(origin, { b: '0' })
  t.same([refused.status, refused.headers.get('retry-after'), refused.body], [503, '3', { code: 'mine: FST_COMET_TOO_MANY_PENDING' }])
  await app.comet.publish('a', 'done')
  t.equal((await waiting).status, 200)
})


t.test('an engine\'s own error with the code FST_COMET_ENGINE_UNAVAILABLE and no Retry-After: 503 without the header, not a crash', async t => {
  const engine = new MemoryEngine()
  t.teardown(() => engine.close())
  engine.publish = async () => { throw Object.assign(new Error('fastify-comet: down'), { code: 'FST_COMET_ENGINE_UNAVAILABLE', statusCode: 503 }) }
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(comet, { engine })
  const refused = await app.inject({ method: 'POST', url: '/comet/publish/room' })
  t.same([refused.statusCode, refused.headers['retry-after'], refused.json().code], [503, undefined, 'FST_COMET_ENGINE_UNAVAILABLE'])
})
