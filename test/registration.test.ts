// Registering the plugin: once per encapsulation context, with a coded error that says what to do
// when it is registered twice in one.
import Fastify from 'fastify'
import t from 'tap'
import comet from '../plugin.js'

for (const [what, second] of [['the same options', {}], ['another prefix', { prefix: '/other' }]] as const) {
  t.test(`registered twice on one instance, with ${what}: FST_COMET_ALREADY_REGISTERED, saying what to do`, async t => {
    const app = Fastify()
    t.teardown(() => app.close())
    app.register(comet)
    app.register(comet, second)
    // Regression: this was Fastify's FST_ERR_DEC_ALREADY_PRESENT (or FST_ERR_DUPLICATED_ROUTE).
    await t.rejects(async () => app.ready(), {
      code: 'FST_COMET_ALREADY_REGISTERED',
      message: /^fastify-comet: registered twice on one instance .*register it once, or, for a second set of channels, once more inside an encapsulated context with a prefix of its own/
    })
  })
}

t.test('what the error advises works: a second instance in an encapsulated context, with a prefix of its own', async t => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(comet)
  await app.register(async child => {
    await child.register(comet, { prefix: '/other' })
    child.post('/other-news', async () => child.comet.publish('room', 'other'))
  })
  app.post('/news', async () => app.comet.publish('room', 'main'))
  await app.ready()
  t.equal((await app.inject({ method: 'POST', url: '/news' })).statusCode, 200)
  t.equal((await app.inject({ method: 'POST', url: '/other-news' })).statusCode, 200)
  const main = (await app.inject('/comet/subscribe?subscribed[room]=all')).json()
  const other = (await app.inject('/other/subscribe?subscribed[room]=all')).json()
  t.same([main.m.room.map((e: { data: unknown }) => e.data), other.m.room.map((e: { data: unknown }) => e.data)], [['main'], ['other']], 'each its own channels')
})
