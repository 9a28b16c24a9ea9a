// A poll is forgotten as soon as its client is gone, however the request came: pipelined on a
// connection, over HTTP/1.0, or as an HTTP/2 stream. Raw sockets, so that nothing hides a case.
import { connect as connectHttp2, constants as http2Constants } from 'node:http2'
import { connect, type Socket } from 'node:net'
import Fastify from 'fastify'
import t, { type Test } from 'tap'
import comet, { MemoryEngine, type CometEngine, type CometOptions } from '../plugin.js'
import { counters, countersWith, eventually, poll, serve, type Served } from './helpers.js'

const subscribeRequest = (channel: string, version = '1.1'): string =>
  `GET /comet/subscribe?subscribed[${channel}]=0 HTTP/${version}\r\nHost: 127.0.0.1\r\n\r\n`

/** A raw connection to the server, with everything it has received so far. */
async function rawConnection (t: Test, { origin }: Served): Promise<{ socket: Socket, received: () => string }> {
  const { port } = new URL(origin)
  const socket = connect(Number(port), '127.0.0.1')
  t.teardown(() => { socket.destroy() })
  let received = ''
  socket.setEncoding('utf8').on('data', chunk => { received += chunk })
  await new Promise(resolve => socket.once('connect', resolve))
  return { socket, received: () => received }
}

/** Writes `requests` on a connection, closes it once a poll waits, and expects nothing left. */
async function forgottenOnClose (t: Test, requests: string): Promise<void> {
  const served = await serve(t)
  const { app } = served
  const { socket } = await rawConnection(t, served)
  socket.write(requests)
  await eventually(() => app.comet.stats().pending === 1)
  socket.destroy()
  await eventually(() => app.comet.stats().pending === 0, 1000)
  t.has(app.comet.stats(), { channels: 0, pending: 0, published: 0, delivered: 0, hangUps: 1 }, 'the newest poll hung up, the others were answered')
}

t.test('pipelined polls on a connection that closes are all forgotten at once', async t => {
  await forgottenOnClose(t, subscribeRequest('a').repeat(3))
})

t.test('a poll pipelined behind a waiting one answers that one at once, and waits itself', async t => {
  const served = await serve(t)
  const { app } = served
  const { socket, received } = await rawConnection(t, served)
  socket.write(subscribeRequest('a') + subscribeRequest('b'))
  await eventually(() => received().includes('"s":0'), 2000)
  t.match(received(), /^HTTP\/1\.1 200 OK\r\n[^]*\{"s":0,"p":\{"a":"[^"]+"\}\}$/, 'the first, with nothing new')
  t.equal(app.comet.stats().pending, 1, 'the newest waits')
  await app.comet.publish('b', 'second')
  await eventually(() => received().includes('"data":"second"'))
  t.equal(app.comet.stats().pending, 0)
})

t.test('a poll pipelined behind one still reading answers that one as soon as it has read', async t => {
  let releaseReads: () => void = () => {}
  const readsHeld = new Promise<void>(resolve => { releaseReads = resolve })
  const memory = new MemoryEngine()
  t.teardown(() => memory.close())
  // An engine whose first read waits until the test lets it go, as one over the network may.
  let reads = 0
  const engine: CometEngine = {
    publish: async (channel, json) => await memory.publish(channel, json),
    read: async (channel, position, limit) => {
      if (reads++ === 0) await readsHeld
      return memory.read(channel, position, limit)
    },
    watch: (channel, watcher) => { memory.watch(channel, watcher) },
    unwatch: (channel, watcher) => { memory.unwatch(channel, watcher) },
    channelCount: () => memory.channelCount(),
    close: async () => {}
  }
  const served = await serve(t, { engine })
  const { app } = served
  const { socket, received } = await rawConnection(t, served)
  socket.write(subscribeRequest('a'))
  await eventually(() => reads === 1)
  socket.write(subscribeRequest('b'))
  await eventually(() => app.comet.stats().pending === 1)
  releaseReads()
  await eventually(() => received().includes('"s":0'), 2000)
  t.equal(app.comet.stats().pending, 1, 'the newest waits')
  await app.comet.publish('b', 'second')
  await eventually(() => received().includes('"data":"second"'))
})

t.test('a burst of pipelined polls holds one poll, and its hang-up is still seen', async t => {
  // Regression: 10,000 pipelined polls on 5 connections stayed pending once the connections closed.
  const served = await serve(t)
  const { app } = served
  const { socket, received } = await rawConnection(t, served)
  socket.write(subscribeRequest('a').repeat(2000))
  await eventually(() => received().split('HTTP/1.1 200').length === 2000, 20_000)
  t.equal(app.comet.stats().pending, 1)
  socket.destroy()
  await eventually(() => app.comet.stats().pending === 0, 1000)
  t.has(app.comet.stats(), { channels: 0, pending: 0, published: 0, delivered: 0, hangUps: 1, answered: { superseded: 1999 } })
})

t.test('polls one after another on a keep-alive connection all wait', async t => {
  const served = await serve(t)
  const { app } = served
  const { socket, received } = await rawConnection(t, served)
  for (const round of [1, 2, 3]) {
    socket.write(subscribeRequest('a'))
    await eventually(() => app.comet.stats().pending === 1)
    await app.comet.publish('a', round)
    await eventually(() => received().split('HTTP/1.1 200').length === round + 1)
  }
  t.notMatch(received(), /"s":0/, 'none was answered early')
})

t.test('many polls on one keep-alive connection add one close listener to its socket, not one each', async t => {
  const served = await serve(t)
  const { app } = served
  const sockets: Socket[] = []
  app.server.on('connection', (socket: Socket) => { sockets.push(socket) })
  const { socket, received } = await rawConnection(t, served)
  const answered = (): number => received().split('HTTP/1.1 200').length - 1
  const atOnce = 'GET /comet/subscribe?subscribed[a]=0&wait=0 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'
  socket.write(atOnce)
  await eventually(() => answered() === 1)
  const serverSocket = sockets[0] as Socket
  const listeners = serverSocket.listenerCount('close')
  for (let round = 2; round <= 30; round++) {
    socket.write(atOnce)
    await eventually(() => answered() === round)
  }
  t.equal(sockets.length, 1, 'one connection')
  t.equal(serverSocket.listenerCount('close'), listeners, `${listeners} listeners after 1 poll and after 30`)
  socket.write(subscribeRequest('a'))
  await eventually(() => app.comet.stats().pending === 1)
  socket.destroy()
  await eventually(() => app.comet.stats().pending === 0, 1000)
  t.equal(app.comet.stats().hangUps, 1, 'and the hang-up of the last is still seen')
})

t.test('maxPending: 50, 60 pipelined polls and a closed connection: new clients are not refused', async t => {
  // Regression: the queued polls outlived their connection, held maxPending, and new clients got 503.
  const served = await serve(t, { maxPending: 50 })
  const { app, origin } = served
  const { socket } = await rawConnection(t, served)
  socket.write(subscribeRequest('a').repeat(60))
  await eventually(() => app.comet.stats().pending === 1)
  t.equal(app.comet.stats().pending, 1, 'one poll per connection')
  socket.destroy()
  await eventually(() => app.comet.stats().pending === 0, 1000)

  const clients = Array.from({ length: 10 }, (_, i) => poll(origin, { [`c${i}`]: '0' }))
  await eventually(() => app.comet.stats().pending === 10)
  for (let i = 0; i < 10; i++) await app.comet.publish(`c${i}`, i)
  t.same((await Promise.all(clients)).map(r => r.status), Array(10).fill(200))
})

t.test('an HTTP/1.0 poll is forgotten when its client closes the connection', async t => {
  await forgottenOnClose(t, subscribeRequest('a', '1.0'))
})

t.test('an HTTP/1.0 poll is answered, and its connection closed', async t => {
  const served = await serve(t)
  const { app } = served
  const { socket, received } = await rawConnection(t, served)
  const ended = new Promise(resolve => socket.once('end', resolve))
  socket.write(subscribeRequest('a', '1.0'))
  await eventually(() => app.comet.stats().pending === 1)
  await app.comet.publish('a', 'hello')
  await ended
  t.match(received(), /^HTTP\/1\.1 200 OK\r\n[^]*"data":"hello"/)
})

async function http2Server (t: Test, options: CometOptions = {}): Promise<{ app: ReturnType<typeof Fastify>, origin: string }> {
  const app = Fastify({ http2: true })
  await app.register(comet, options)
  t.teardown(() => app.close())
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as { port: number }
  return { app: app as unknown as ReturnType<typeof Fastify>, origin: `http://127.0.0.1:${port}` }
}

t.test('an HTTP/2 poll is forgotten when its stream is reset, and its session carries on', async t => {
  const { app, origin } = await http2Server(t)
  const session = connectHttp2(origin)
  t.teardown(() => { session.destroy() })
  const reset = session.request({ ':path': '/comet/subscribe?subscribed[a]=0' })
  reset.on('error', () => {})
  const staying = session.request({ ':path': '/comet/subscribe?subscribed[a]=0' })
  let answer = ''
  staying.setEncoding('utf8').on('data', chunk => { answer += chunk })
  await eventually(() => app.comet.stats().pending === 2, 1000)
  reset.close(http2Constants.NGHTTP2_CANCEL)
  await eventually(() => app.comet.stats().pending === 1, 1000)
  await app.comet.publish('a', 'kept')
  await new Promise(resolve => staying.once('end', resolve))
  t.match(JSON.parse(answer), { s: 1, m: { a: [{ data: 'kept' }] } })
})

t.test('HTTP/2 polls are forgotten when their session is destroyed', async t => {
  const { app, origin } = await http2Server(t)
  const session = connectHttp2(origin)
  for (const channel of ['a', 'b', 'c']) session.request({ ':path': `/comet/subscribe?subscribed[${channel}]=0` }).on('error', () => {})
  await eventually(() => app.comet.stats().pending === 3, 1000)
  session.destroy()
  await eventually(() => app.comet.stats().pending === 0, 1000)
  t.same(counters(app.comet.stats()), countersWith({ hangUps: 3 }))
})

t.test('an HTTP/2 stream reset while authorizeSubscribe runs leaves no poll behind', async t => {
  let release: () => void = () => {}
  const held = new Promise<void>(resolve => { release = resolve })
  const asked: Array<{ raw: { stream: { destroyed: boolean } } }> = []
  const { app, origin } = await http2Server(t, {
    authorizeSubscribe: async request => { asked.push(request as never); await held; return true }
  })
  const session = connectHttp2(origin)
  t.teardown(() => { session.destroy() })
  const stream = session.request({ ':path': '/comet/subscribe?subscribed[a]=0' })
  stream.on('error', () => {})
  await eventually(() => asked.length === 1, 1000)
  stream.close(http2Constants.NGHTTP2_CANCEL)
  await eventually(() => asked[0]?.raw.stream.destroyed === true, 1000)
  release()
  await eventually(() => app.comet.stats().channels === 0, 1000)
  t.has(app.comet.stats(), { channels: 0, pending: 0, published: 0, delivered: 0 })
})
