// A stream costs the server bounded memory whatever its client does: one that stops reading is
// ended once maxStreamQueueBytes are queued, and a catch-up goes out in pieces of maxReplyBytes
// at the pace the client reads them, over real sockets that the test stops reading.
import diagnostics from 'node:diagnostics_channel'
import t, { type Test } from 'tap'
import Fastify from 'fastify'
import comet, { diagnosticsChannels, type StreamEndMessage } from '../plugin.js'
import { closeServer, eventually, serve, sleep } from './helpers.js'
import { openStream } from './sse-client.js'

function streamEnds (t: Test): StreamEndMessage[] {
  const messages: StreamEndMessage[] = []
  const listener = (message: unknown): void => { messages.push(message as StreamEndMessage) }
  diagnostics.subscribe(diagnosticsChannels.streamEnd, listener)
  t.teardown(() => { diagnostics.unsubscribe(diagnosticsChannels.streamEnd, listener) })
  return messages
}

t.test('a client that never reads is ended once maxStreamQueueBytes are queued for it, and its memory stays bounded', async t => {
  const maxStreamQueueBytes = 64 * 1024
  const { app, origin } = await serve(t, { maxStreamQueueBytes, historySize: 4 })
  const ends = streamEnds(t)
  const stream = await openStream(origin, { flood: '0' })
  t.teardown(() => { stream.close() })
  await stream.until(p => p.messages.length === 1)
  stream.response.pause()
  const data = 'x'.repeat(16 * 1024)
  // The kernel's socket buffers take some megabytes first; the loop is bounded all the same.
  for (let i = 0; i < 4000 && app.comet.stats().streams.ended.slow === 0; i++) {
    await app.comet.publish('flood', data)
    if (i % 50 === 0) await sleep(1)
  }
  t.match(app.comet.stats().streams, { open: 0, ended: { slow: 1 } }, 'the stream was ended as slow')
  t.equal(ends.length, 1)
  const [end] = ends
  t.ok((end?.queuedBytes ?? Infinity) <= maxStreamQueueBytes + data.length + 1024, `what was queued stays within the bound plus one delivery (${end?.queuedBytes} bytes)`)
  await app.comet.publish('flood', 'after')
  t.equal(app.comet.stats().streams.open, 0)
})

t.test('a catch-up larger than maxReplyBytes goes out in pieces, each written when the client has read the one before', async t => {
  const maxReplyBytes = 64 * 1024
  const events = 1000
  const app = Fastify()
  t.teardown(() => closeServer(app))
  // Each write to a stream, as the server makes it.
  const writes: number[] = []
  app.addHook('onRequest', async (_request, reply) => {
    const raw = reply.raw
    const write = raw.write.bind(raw) as (chunk: string) => boolean
    raw.write = ((chunk: string) => {
      writes.push(Buffer.byteLength(chunk))
      return write(chunk)
    }) as typeof raw.write
  })
  await app.register(comet, { maxReplyBytes, historySize: events, maxStreamQueueBytes: 16 * 1024 })
  const origin = await app.listen({ port: 0, host: '127.0.0.1' })
  const data = 'y'.repeat(30 * 1024)
  for (let n = 0; n < events; n++) await app.comet.publish('history', { n, data })
  const total = events * data.length

  const stream = await openStream(origin, { history: 'all' })
  t.teardown(() => { stream.close() })
  stream.response.pause()
  // The server writes until the socket's buffers are full, and then waits.
  let written = -1
  await eventually(async () => {
    const now = app.comet.stats().streams.bytes
    const stable = now === written
    written = now
    await sleep(100)
    return stable
  }, 10000)
  t.ok(written < total / 2, `the server stopped writing when the client stopped reading (${written} of ${total} bytes)`)
  t.equal(app.comet.stats().streams.open, 1, 'a catch-up waits for its client rather than ending it as slow')

  stream.response.resume()
  await stream.until(p => p.messages.length === events + 1, 20000)
  t.same(stream.events().map(e => (e.data as { n: number }).n), Array.from({ length: events }, (_, n) => n), 'every event, once, in order')
  t.ok(writes.length > total / maxReplyBytes, `in pieces (${writes.length} writes)`)
  t.ok(Math.max(...writes) <= maxReplyBytes + 4 * 1024, `of at most maxReplyBytes and their framing (${Math.max(...writes)} bytes)`)
})
