// Route options passed through to the plugin's routes (logLevel, logSerializers, routeConfig,
// constraints, schemaHide), how much a poll logs by default, and engine failures in the log.
import { Writable } from 'node:stream'
import Fastify, { type FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import comet, { MemoryEngine, type CometOptions } from '../plugin.js'

interface LogLine { level: number, msg: string, req?: Record<string, unknown>, err?: { message: string }, reqId?: string }

/** A server whose logger writes its JSON lines into `lines`, at `level`. */
async function logged (t: Test, options: CometOptions, level = 'info'): Promise<{ app: FastifyInstance, lines: LogLine[] }> {
  const lines: LogLine[] = []
  const stream = new Writable({
    write (chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n')) if (line !== '') lines.push(JSON.parse(line) as LogLine)
      done()
    }
  })
  const app = Fastify({ logger: { level, stream } })
  t.teardown(() => app.close())
  await app.register(comet, options)
  return { app, lines }
}

const wait0 = '/comet/subscribe?subscribed[room]=0&wait=0'

/** The log lines of requests to one URL. */
function linesOf (lines: readonly LogLine[], app: FastifyInstance, url: string): LogLine[] {
  void app
  const ids = new Set(lines.filter(line => line.req?.url === url).map(line => line.reqId))
  return lines.filter(line => line.reqId !== undefined && ids.has(line.reqId))
}

t.test('by default a poll logs nothing at info, while a publish and client.js log as the server does', async t => {
  const { app, lines } = await logged(t, {})
  t.equal((await app.inject(wait0)).statusCode, 200)
  t.equal((await app.inject({ method: 'POST', url: '/comet/publish/room' })).statusCode, 200)
  t.equal((await app.inject('/comet/client.js')).statusCode, 200)
  t.same(linesOf(lines, app, wait0), [], 'the poll is quiet')
  t.same(linesOf(lines, app, '/comet/publish/room').map(line => line.msg), ['incoming request', 'request completed'])
  t.same(linesOf(lines, app, '/comet/client.js').map(line => line.msg), ['incoming request', 'request completed'])
})

t.test('logLevel applies to every route of the plugin, polls included', async t => {
  const { app, lines } = await logged(t, { logLevel: 'info' })
  await app.inject(wait0)
  t.same(linesOf(lines, app, wait0).map(line => line.msg), ['incoming request', 'request completed'])

  // The form of the issue: the register option of the same name, which Fastify ignores for a plugin
  // made with fastify-plugin.
  const quiet = await logged(t, { logLevel: 'warn' })
  await quiet.app.inject({ method: 'POST', url: '/comet/publish/room' })
  await quiet.app.inject('/comet/client.js')
  t.same(quiet.lines.filter(line => line.req !== undefined), [], 'nothing at info from any route')
})

t.test('polls log at the server\'s level when it is quieter than warn', async t => {
  const levels = new Map<string, string>()
  for (const [serverLevel, expected] of [['error', 'error'], ['info', 'warn'], ['trace', 'warn']] as const) {
    const { app } = await logged(t, {}, serverLevel)
    app.addHook('onRequest', async request => { levels.set(serverLevel, request.log.level) })
    await app.inject(wait0)
    t.equal(levels.get(serverLevel), expected, `server at ${serverLevel}`)
  }
  const silent = Fastify()
  t.teardown(() => silent.close())
  await silent.register(comet)
  t.equal((await silent.inject(wait0)).statusCode, 200, 'a server without a logger')
})

t.test('logSerializers are the routes\' own serializers', async t => {
  const { app, lines } = await logged(t, { logSerializers: { req: (request: { method: string }) => `${request.method} on a comet route` } })
  await app.inject({ method: 'POST', url: '/comet/publish/room' })
  t.ok(lines.some(line => line.msg === 'incoming request' && (line.req as unknown) === 'POST on a comet route'), 'the route logs the request through the serializer given')
})

t.test('an engine failure is logged once, with the error, by the request that met it', async t => {
  class FailingEngine extends MemoryEngine {
    override read (): never { throw new Error('engine down: read') }
    override publish (): Promise<string> { return Promise.reject(new Error('engine down: publish')) }
  }
  const engine = new FailingEngine()
  t.teardown(() => engine.close())
  const { app, lines } = await logged(t, { engine }, 'info')
  t.equal((await app.inject(wait0)).statusCode, 500)
  t.equal((await app.inject({ method: 'POST', url: '/comet/publish/room' })).statusCode, 500)
  for (const what of ['read', 'publish']) {
    const errors = lines.filter(line => line.err?.message === `engine down: ${what}`)
    t.equal(errors.length, 1, `the failing ${what}: one line`)
    t.equal(errors[0]?.level, 50, 'at error level, which the quiet poll level lets through')
    t.ok(errors[0]?.reqId !== undefined, 'through the request\'s logger')
  }
})

t.test('routeConfig reaches each route as its config', async t => {
  const app = Fastify()
  t.teardown(() => app.close())
  const configs = new Map<string, unknown>()
  app.addHook('onRequest', async request => { configs.set(request.routeOptions.url ?? '', request.routeOptions.config) })
  await app.register(comet, { routeConfig: { rateLimit: false } })
  await app.inject(wait0)
  await app.inject({ method: 'POST', url: '/comet/publish/room' })
  await app.inject({ method: 'POST', url: '/comet/publish?channel=room' })
  await app.inject('/comet/client.js')
  t.same([...configs.keys()].sort(), ['/comet/client.js', '/comet/publish', '/comet/publish/*', '/comet/subscribe'])
  for (const [url, config] of configs) t.match(config, { rateLimit: false }, url)
})

t.test('constraints restrict the routes, here to one host', async t => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(comet, { constraints: { host: 'live.example.com' } })
  t.equal((await app.inject({ url: wait0, headers: { host: 'live.example.com' } })).statusCode, 200)
  t.equal((await app.inject({ url: wait0, headers: { host: 'www.example.com' } })).statusCode, 404)
  t.equal((await app.inject({ url: '/comet/client.js', headers: { host: 'www.example.com' } })).statusCode, 404)
})

t.test('schemaHide sets schema.hide on every route, for @fastify/swagger; by default they are shown', async t => {
  for (const schemaHide of [true, false]) {
    const app = Fastify()
    t.teardown(() => app.close())
    const hidden = new Map<string, unknown>()
    app.addHook('onRoute', route => { hidden.set(`${route.method as string} ${route.url}`, (route.schema as { hide?: boolean } | undefined)?.hide) })
    await app.register(comet, { schemaHide })
    await app.ready()
    const mine = [...hidden].filter(([route]) => route.includes('/comet/'))
    const routes = mine.map(([route]) => route)
    for (const route of ['GET /comet/client.js', 'GET /comet/subscribe', 'POST /comet/publish', 'POST /comet/publish/*']) t.ok(routes.includes(route), route)
    t.ok(mine.every(([, hide]) => hide === (schemaHide ? true : undefined)), `schemaHide: ${String(schemaHide)}`)
    // The schemas still validate: a bad channel is still refused.
    t.equal((await app.inject('/comet/subscribe?subscribed[no%20space]=0')).statusCode, 400)
  }
})
