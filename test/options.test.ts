import Fastify from 'fastify'
import t from 'tap'
import comet, { MemoryEngine } from '../plugin.js'
import { register } from './helpers.js'

const badOptions: Array<[string, Record<string, unknown>, RegExp]> = [
  ['prefix without a leading slash', { prefix: 'comet' }, /option "prefix" must be a path/],
  ['prefix with a trailing slash', { prefix: '/comet/' }, /option "prefix"/],
  ['prefix that is not a string', { prefix: 42 }, /option "prefix".*got 42/],
  ['tries of zero', { tries: 0 }, /option "tries" must be a positive integer \(got 0\)/],
  ['fractional tries', { tries: 1.5 }, /option "tries"/],
  ['tries as a string', { tries: '20' }, /option "tries".*got "20"/],
  ['negative sleep', { sleep: -1 }, /option "sleep" must be a positive number/],
  ['infinite sleep', { sleep: Infinity }, /option "sleep"/],
  ['a wait longer than a timer can hold', { tries: 100000, sleep: 100 }, /tries × sleep is at most 24 days/],
  ['historySize of zero', { historySize: 0 }, /option "historySize"/],
  ['historyTtl of zero', { historyTtl: 0 }, /option "historyTtl" must be a positive number of seconds or Infinity/],
  ['historyTtl as NaN', { historyTtl: NaN }, /option "historyTtl"/],
  ['maxChannels of zero', { maxChannels: 0 }, /option "maxChannels"/],
  ['maxPayload as an object', { maxPayload: {} }, /option "maxPayload".*got an object/],
  ['maxPending as a function', { maxPending: () => 1 }, /option "maxPending".*got a function/],
  ['maxPending of zero', { maxPending: 0 }, /option "maxPending" must be a positive integer or Infinity/],
  ['batchSize as an array', { batchSize: [1] }, /option "batchSize".*got an array/],
  ['authorizePublish that is not a function', { authorizePublish: true }, /option "authorizePublish" must be a function/],
  ['authorizeSubscribe that is not a function', { authorizeSubscribe: 'yes' }, /option "authorizeSubscribe"/],
  ['engine without the engine methods', { engine: { publish () {} } }, /option "engine" must be an object with the methods/],
  ['engine of null', { engine: null }, /option "engine".*got null/],
  ['historySize together with an engine', { engine: new MemoryEngine(), historySize: 5 }, /option "historySize" must be left out when an engine is given/],
  ['serveClient as a string', { serveClient: 'no' }, /option "serveClient" must be true or false \(got "no"\)/],
  ['historyTtl together with an engine', { engine: new MemoryEngine(), historyTtl: 5 }, /option "historyTtl" must be left out when an engine is given/],
  ['historyBytes together with an engine', { engine: new MemoryEngine(), historyBytes: 5 }, /option "historyBytes" must be left out when an engine is given/],
  ['historyChannels together with an engine', { engine: new MemoryEngine(), historyChannels: 5 }, /option "historyChannels" must be left out when an engine is given/],
  ['historyBytes of zero', { historyBytes: 0 }, /option "historyBytes" must be a positive integer/],
  ['historyChannels as a string', { historyChannels: '10' }, /option "historyChannels" must be a positive integer \(got "10"\)/],
  ['maxReplyBytes as a fraction', { maxReplyBytes: 1.5 }, /option "maxReplyBytes" must be a positive integer/],
  ['logLevel that is not a level', { logLevel: 'loud' }, /option "logLevel" must be one of "fatal", "error", "warn", "info", "debug", "trace", "silent" \(got "loud"\)/],
  ['logSerializers with a value that is not a function', { logSerializers: { req: 'url' } }, /option "logSerializers" must be an object of functions/],
  ['logSerializers as a function', { logSerializers: () => ({}) }, /option "logSerializers".*got a function/],
  ['routeConfig as an array', { routeConfig: [] }, /option "routeConfig" must be an object \(got an array\)/],
  ['constraints as a string', { constraints: 'example.com' }, /option "constraints" must be an object/],
  ['idempotencyWindow of zero', { idempotencyWindow: 0 }, /option "idempotencyWindow" must be a positive number of seconds \(got 0\)/],
  ['idempotencyWindow of Infinity', { idempotencyWindow: Infinity }, /option "idempotencyWindow" must be a positive number of seconds/],
  ['idempotencyKeys as a fraction', { idempotencyKeys: 2.5 }, /option "idempotencyKeys" must be a positive integer \(got 2.5\)/],
  ['idempotencyWindow together with an engine', { engine: new MemoryEngine(), idempotencyWindow: 5 }, /option "idempotencyWindow" must be left out when an engine is given/],
  ['idempotencyKeys together with an engine', { engine: new MemoryEngine(), idempotencyKeys: 5 }, /option "idempotencyKeys" must be left out when an engine is given/],
  ['schemaHide as a string', { schemaHide: 'yes' }, /option "schemaHide" must be true or false/]
]

for (const [what, options, message] of badOptions) {
  t.test(`registration throws FST_COMET_INVALID_OPTION for ${what}`, async t => {
    await t.rejects(register(options), { code: 'FST_COMET_INVALID_OPTION', message })
    const engine = options.engine
    if (engine instanceof MemoryEngine) await engine.close()
  })
}

t.test('registration throws FST_COMET_UNKNOWN_OPTION for a misspelt option, naming the real ones', async t => {
  await t.rejects(register({ historySzie: 10 }), {
    code: 'FST_COMET_UNKNOWN_OPTION',
    message: /unknown option "historySzie"; the options are prefix, tries, sleep, historySize/
  })
})

t.test('the options of fastify.register itself are accepted', async t => {
  await t.resolves(register({ logLevel: 'warn' }))
})

t.test('every option accepts its documented range', async t => {
  await t.resolves(register({
    prefix: '/api/events',
    tries: 3,
    sleep: 0.25,
    historySize: 1,
    historyTtl: Infinity,
    maxChannels: 1,
    maxPayload: 1,
    maxPending: Infinity,
    batchSize: 1,
    authorizePublish: () => true,
    authorizeSubscribe: async () => true,
    serveClient: false
  }))
  await t.resolves(register({ maxPending: 10, historyTtl: 0.5 }), 'finite maxPending and fractional historyTtl')
  await t.resolves(register({ prefix: undefined, tries: undefined }), 'undefined means the default')
})

t.test('the prefix option moves the routes', async t => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(comet, { prefix: '/live', tries: 1, sleep: 0.01 })
  t.equal((await app.inject({ method: 'POST', url: '/live/publish/room' })).statusCode, 200)
  t.equal((await app.inject('/live/subscribe?subscribed[room]=0')).statusCode, 200)
  t.equal((await app.inject({ method: 'POST', url: '/comet/publish/room' })).statusCode, 404)
})
