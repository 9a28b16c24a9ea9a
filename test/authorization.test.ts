import { inspect } from 'node:util'
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify'
import t, { type Test } from 'tap'
import comet, { type CometOptions } from '../plugin.js'

async function appWith (t: Test, options: CometOptions): Promise<FastifyInstance> {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(comet, { tries: 1, sleep: 0.01, ...options })
  return app
}

// Channels under "public:" are open; "user:<name>" only to that user, named in a header.
function mayUse (request: FastifyRequest, channel: string): boolean {
  return channel.startsWith('public:') || channel === `user:${String(request.headers['x-user'])}`
}

t.test('authorizeSubscribe is asked for each channel, and one denied channel denies the poll with 403', async t => {
  const asked: string[] = []
  const app = await appWith(t, {
    authorizeSubscribe: (request, channel) => {
      asked.push(channel)
      return mayUse(request, channel)
    }
  })
  const allowed = await app.inject({ url: '/comet/subscribe?subscribed[public:news]=0&subscribed[user:ann]=0', headers: { 'x-user': 'ann' } })
  t.equal(allowed.statusCode, 200)
  t.same(asked, ['public:news', 'user:ann'])

  const denied = await app.inject({ url: '/comet/subscribe?subscribed[public:news]=0&subscribed[user:bob]=0', headers: { 'x-user': 'ann' } })
  t.equal(denied.statusCode, 403)
  t.same(denied.json(), {
    statusCode: 403,
    code: 'FST_COMET_FORBIDDEN',
    error: 'Forbidden',
    message: 'fastify-comet: not allowed to subscribe to channel "user:bob"'
  })
  t.equal(app.comet.stats().channels, 0, 'a denied poll watches nothing')
})

t.test('authorizePublish is asked for an HTTP publish, which is refused with 403 and stores nothing', async t => {
  const app = await appWith(t, { authorizePublish: mayUse })
  const denied = await app.inject({ method: 'POST', url: '/comet/publish/user:bob', headers: { 'x-user': 'ann' } })
  t.equal(denied.statusCode, 403)
  t.match(denied.json(), { code: 'FST_COMET_FORBIDDEN', message: 'fastify-comet: not allowed to publish to channel "user:bob"' })
  const deniedInQuery = await app.inject({ method: 'POST', url: '/comet/publish?channel=user:bob', headers: { 'x-user': 'ann' } })
  t.equal(deniedInQuery.statusCode, 403, 'the query form is guarded the same way')
  t.equal(app.comet.stats().published, 0)

  const allowed = await app.inject({ method: 'POST', url: '/comet/publish/user:ann', headers: { 'x-user': 'ann' } })
  t.equal(allowed.statusCode, 200)
})

t.test('publish from server code is trusted and not asked', async t => {
  const app = await appWith(t, { authorizePublish: () => false })
  await t.resolves(app.comet.publish('anything', 1))
})

t.test('hooks may be async', async t => {
  const app = await appWith(t, {
    authorizeSubscribe: async (_request, channel) => channel !== 'secret',
    authorizePublish: async (_request, channel) => channel !== 'secret'
  })
  t.equal((await app.inject('/comet/subscribe?subscribed[open]=0')).statusCode, 200)
  t.equal((await app.inject('/comet/subscribe?subscribed[secret]=0')).statusCode, 403)
  t.equal((await app.inject({ method: 'POST', url: '/comet/publish/open' })).statusCode, 200)
  t.equal((await app.inject({ method: 'POST', url: '/comet/publish/secret' })).statusCode, 403)
})

t.test('anything but true denies, so a hook that forgets to return does not let everyone in', async t => {
  const app = await appWith(t, { authorizeSubscribe: (() => undefined) as unknown as CometOptions['authorizeSubscribe'] })
  t.equal((await app.inject('/comet/subscribe?subscribed[room]=0')).statusCode, 403)

  // Regression: a truthy verdict that is not true ('yes', 1) was let through.
  for (const verdict of ['yes', 'true', 1, {}, [], Promise.resolve('yes')]) {
    const hook = (() => verdict) as unknown as CometOptions['authorizeSubscribe']
    const truthy = await appWith(t, { authorizeSubscribe: hook, authorizePublish: hook })
    const what = `a hook returning ${inspect(verdict)}`
    t.equal((await truthy.inject('/comet/subscribe?subscribed[room]=0')).statusCode, 403, `${what} denies a subscribe`)
    t.equal((await truthy.inject({ method: 'POST', url: '/comet/publish/room' })).statusCode, 403, `${what} denies a publish`)
    t.equal((await truthy.inject({ method: 'POST', url: '/comet/publish?channel=room' })).statusCode, 403, `${what} denies a publish in the query form`)
    t.equal(truthy.comet.stats().published, 0)
  }
})

t.test('an error thrown by a hook keeps its status code, so a hook can answer 401', async t => {
  const unauthorized = Object.assign(new Error('log in first'), { statusCode: 401 })
  const app = await appWith(t, {
    authorizeSubscribe: () => { throw unauthorized },
    authorizePublish: async () => { throw unauthorized }
  })
  const subscribe = await app.inject('/comet/subscribe?subscribed[room]=0')
  t.equal(subscribe.statusCode, 401)
  t.match(subscribe.json(), { statusCode: 401, message: 'log in first' })
  const publish = await app.inject({ method: 'POST', url: '/comet/publish/room' })
  t.equal(publish.statusCode, 401)
  t.equal(app.comet.stats().channels, 0)
})
