import { connect, type Socket } from 'node:net'
import Fastify, { type FastifyRequest } from 'fastify'
import t from 'tap'
import comet, { MemoryEngine, type ChannelWatcher } from '../plugin.js'
import { counters, countersWith, eventually, poll, serve, within } from './helpers.js'

t.test('a client that hangs up mid-poll is forgotten at once', async t => {
  const { app, origin } = await serve(t)
  const hangUp = new AbortController()
  const abandoned = poll(origin, { room: '0', lobby: '0' }, { signal: hangUp.signal })
  await eventually(() => app.comet.stats().pending === 1)
  t.equal(app.comet.stats().channels, 2)

  hangUp.abort()
  await t.rejects(abandoned, { name: 'AbortError' })
  await eventually(() => app.comet.stats().pending === 0)
  t.same(counters(app.comet.stats()), countersWith({ hangUps: 1 }), 'its channels held nothing else and are gone too')

  // A later publish reaches nobody and breaks nothing.
  await app.comet.publish('room', 'after')
  t.equal(app.comet.stats().delivered, 0)
})

t.test('a hang-up leaves the other polls on the same channel waiting', async t => {
  const { app, origin } = await serve(t)
  const hangUp = new AbortController()
  const abandoned = poll(origin, { room: '0' }, { signal: hangUp.signal }).catch(() => 'aborted')
  const staying = poll(origin, { room: '0' })
  await eventually(() => app.comet.stats().pending === 2)
  hangUp.abort()
  t.equal(await abandoned, 'aborted')
  await eventually(() => app.comet.stats().pending === 1)
  await app.comet.publish('room', 'hi')
  // Far below the 40 s timeout, at which the event would come too, read again.
  t.same((await within(staying, 3000, 'the poll that stayed')).body.m?.room?.map(e => e.data), ['hi'])
  t.equal(app.comet.stats().delivered, 1)
})

t.test('fastify.close() answers every waiting poll at once with s=0 and its cursors, and completes', async t => {
  const { app, origin } = await serve(t)
  const waiting = [poll(origin, { a: '0' }), poll(origin, { a: '0', b: '0' }), poll(origin, { c: '0' })]
  await eventually(() => app.comet.stats().pending === 3)
  // Deadlines far below the 40 s the polls would wait: answered only at their timeout (say, from
  // onClose rather than preClose, or not by close() at all), they would pass, slowly.
  const closing = app.close()
  const replies = await within(Promise.all(waiting), 3000, 'the waiting polls')
  await within(closing, 3000, 'fastify.close()')
  t.same(replies.map(r => r.status), [200, 200, 200])
  t.same(replies.map(r => r.body.s), [0, 0, 0])
  t.same(replies.map(r => Object.keys(r.body.p)), [['a'], ['a', 'b'], ['c']])
})

t.test('a poll that reaches the bus while the server closes is answered at once', async t => {
  const app = Fastify()
  let release: () => void = () => {}
  const held = new Promise<void>(resolve => { release = resolve })
  let reached: () => void = () => {}
  const inHook = new Promise<void>(resolve => { reached = resolve })
  // The authorization hook holds the poll until close() has begun.
  await app.register(comet, { authorizeSubscribe: async () => { reached(); await held; return true } })
  const late = app.inject('/comet/subscribe?subscribed[room]=0')
  await inHook
  const closing = app.close()
  release()
  const reply = await within(late, 3000, 'the poll that came during close()')
  await within(closing, 3000, 'fastify.close()')
  t.equal(reply.statusCode, 200)
  t.same(app.comet.stats().answered, { events: 0, timeout: 0, wait0: 0, close: 1, superseded: 0 }, 'counted as answered for the close')
  t.equal(reply.json().s, 0)
})

t.test('a channel with no waiting poll and no event younger than historyTtl is dropped', async t => {
  // The engine's clock moves only when the test says, so that a slow poll on a loaded machine
  // cannot let the event expire before the first check; its sweep timer still runs every 50 ms.
  let now = 1_700_000_000_000
  const engine = new MemoryEngine({ historyTtl: 0.05, now: () => now })
  t.teardown(() => engine.close())
  const { app, origin } = await serve(t, { engine, tries: 1, sleep: 0.01 })
  await app.comet.publish('old', 1)
  const { body } = await poll(origin, { quiet: '0' })
  t.equal(body.s, 0)
  t.equal(app.comet.stats().channels, 1, 'a channel that only had a poll goes when the poll ends')
  now += 1000
  await eventually(() => app.comet.stats().channels === 0)
  t.equal(app.comet.stats().channels, 0, 'the channel with the expired event is swept')
})

t.test('a channel that holds events outlives its polls until they expire', async t => {
  const { app, origin } = await serve(t, { historyTtl: 60, tries: 1, sleep: 0.01 })
  await app.comet.publish('room', 1)
  const first = await poll(origin, { room: 'all' })
  t.equal(app.comet.stats().pending, 0, 'the poll is over')
  t.equal(app.comet.stats().channels, 1)
  const again = await poll(origin, { room: 'all' })
  t.same([first.body.m?.room?.map(e => e.data), again.body.m?.room?.map(e => e.data)], [[1], [1]], 'and the event is still there for the next one')
})

t.test('the engine the plugin created is closed with the server; an engine passed in stays open', async t => {
  const own = Fastify()
  await own.register(comet)
  await own.close()
  await t.rejects(own.comet.publish('room', 1), { code: 'FST_COMET_CLOSED', statusCode: 503 })

  const engine = new MemoryEngine({ historyTtl: Infinity })
  t.teardown(() => engine.close())
  const borrowed = Fastify()
  await borrowed.register(comet, { engine })
  await borrowed.comet.publish('room', 1)
  await borrowed.close()
  await t.resolves(engine.publish('room', '2'), 'the engine still takes events')
  t.equal(engine.channelCount(), 1)
})

t.test('two servers on one engine share channels', async t => {
  const engine = new MemoryEngine()
  t.teardown(() => engine.close())
  const first = await serve(t, { engine })
  const second = await serve(t, { engine })
  const reply = poll(second.origin, { room: '0' })
  await eventually(() => second.app.comet.stats().pending === 1)
  await first.app.comet.publish('room', 'across')
  t.same((await within(reply, 3000, 'the poll on the second server')).body.m?.room?.map(e => e.data), ['across'])
})

t.test('a client that hangs up while authorizeSubscribe still runs is forgotten too', async t => {
  // Regression: the hang-up came before the poll listened for it, and the poll waited its full time.
  // The hook holds the poll until the server has seen the socket close.
  let authorizing: FastifyRequest | undefined
  let release: () => void = () => {}
  const held = new Promise<void>(resolve => { release = resolve })
  const unwatched: string[] = []
  const engine = new (class extends MemoryEngine {
    override unwatch (channel: string, watcher: ChannelWatcher): void {
      unwatched.push(channel)
      super.unwatch(channel, watcher)
    }
  })()
  t.teardown(() => engine.close())
  const { app, origin } = await serve(t, {
    engine,
    authorizeSubscribe: async request => {
      authorizing = request
      await held
      return true
    }
  })
  const hangUp = new AbortController()
  const abandoned = poll(origin, { room: '0' }, { signal: hangUp.signal }).catch(() => 'aborted')
  await eventually(() => authorizing !== undefined)
  hangUp.abort()
  t.equal(await abandoned, 'aborted')
  await eventually(() => authorizing?.raw.socket.destroyed === true)
  release()
  // The poll reaches the bus, watches its channel, and is forgotten at once: it stops watching.
  await eventually(() => unwatched.includes('room'))
  t.same(counters(app.comet.stats()), countersWith({ hangUps: 1 }))
})

t.test('fastify.close() completes promptly whatever keep-alive connections clients hold', async t => {
  // Regression: a connection whose request was still in flight when close() began went idle a
  // moment later, and held close() until its keep-alive timeout (72 s by default).
  let release: () => void = () => {}
  const held = new Promise<void>(resolve => { release = resolve })
  const app = Fastify({ keepAliveTimeout: 60_000 })
  await app.register(comet, { authorizeSubscribe: async (request) => { if (request.query && 'subscribed[late]' in (request.query as object)) await held; return true } })
  app.get('/slow', async () => { await held; return 'done' })
  t.teardown(() => { app.server.closeAllConnections() })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as { port: number }

  const sockets: Socket[] = []
  const answers: string[] = []
  const send = async (request: string): Promise<void> => {
    const socket = connect(port, '127.0.0.1')
    sockets.push(socket)
    const index = answers.push('') - 1
    socket.setEncoding('utf8').on('data', chunk => { answers[index] = `${answers[index] ?? ''}${String(chunk)}` })
    await new Promise(resolve => socket.once('connect', resolve))
    socket.write(request)
  }
  t.teardown(() => { for (const socket of sockets) socket.destroy() })
  await send('GET /comet/subscribe?subscribed[a]=0 HTTP/1.1\r\nHost: x\r\n\r\n') // waits
  await send('GET /comet/subscribe?subscribed[late]=0 HTTP/1.1\r\nHost: x\r\n\r\n') // caught starting
  await send('GET /slow HTTP/1.1\r\nHost: x\r\n\r\n') // the application's own slow route
  await send('POST /comet/publish/b HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n') // idle once answered
  await eventually(() => app.comet.stats().pending === 1 && answers[3] !== '')

  const closing = app.close()
  setImmediate(release)
  // Far below the keep-alive timeout: only closing the connections that went idle gets here.
  const deadline = new Promise<string>(resolve => setTimeout(resolve, 3000, 'still open')).then(String)
  t.equal(await Promise.race([closing.then(() => 'closed'), deadline]), 'closed')
  t.match(answers, [/"s":0/, /"s":0/, /done$/, /"id"/])
})
