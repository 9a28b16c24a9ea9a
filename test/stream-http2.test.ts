// Streams over HTTP/2 (cleartext h2c): many streams on one session, each woken by publishes, a
// reset stream forgotten while the session goes on, and close() ending them all promptly.
import http2 from 'node:http2'
import t from 'tap'
import { eventually, serveHttp2, subscribeQuery, within } from './helpers.js'
import { SseParser } from './sse-client.js'

function openStream (session: http2.ClientHttp2Session, cursors: Record<string, string>): { stream: http2.ClientHttp2Stream, parser: SseParser, headers: Promise<http2.IncomingHttpHeaders>, ended: Promise<void> } {
  const stream = session.request({ ':path': `/comet/subscribe?${subscribeQuery(cursors)}`, accept: 'text/event-stream' })
  const parser = new SseParser()
  stream.setEncoding('utf8')
  stream.on('data', (chunk: string) => { parser.push(chunk) })
  const headers = new Promise<http2.IncomingHttpHeaders>(resolve => stream.once('response', resolve))
  const ended = new Promise<void>(resolve => { stream.once('close', resolve) })
  stream.on('error', () => {})
  return { stream, parser, headers, ended }
}

t.test('ten streams share one HTTP/2 session, each gets its events, and a reset one is forgotten', async t => {
  const { app, session } = await serveHttp2(t, true)
  const streams = Array.from({ length: 10 }, (_, i) => openStream(session, { [`room${i % 2}`]: '0' }))
  const headers = await Promise.all(streams.map(s => s.headers))
  t.ok(headers.every(h => Number(h[':status']) === 200 && h['content-type'] === 'text/event-stream; charset=utf-8' && h['x-accel-buffering'] === 'no'), 'each answers as a stream')
  await eventually(() => app.comet.stats().streams.open === 10)
  await app.comet.publish('room0', 'zero')
  await app.comet.publish('room1', 'one')
  await eventually(() => streams.every(s => s.parser.messages.length === 2))
  t.same(streams.map(s => JSON.parse(s.parser.messages[1]?.data as string).data), Array.from({ length: 10 }, (_, i) => i % 2 === 0 ? 'zero' : 'one'))

  const [reset] = streams
  reset?.stream.close(http2.constants.NGHTTP2_CANCEL)
  await eventually(() => app.comet.stats().streams.open === 9)
  t.match(app.comet.stats().streams.ended, { 'hang-up': 1 })
  await app.comet.publish('room0', 'again')
  await eventually(() => streams.every((s, i) => s.parser.messages.length === (i % 2 === 0 && i > 0 ? 3 : 2)))
  t.equal(reset?.parser.messages.length, 2, 'nothing more reaches the reset stream, and the other streams of its channel get the event')
})

t.test('close() ends every HTTP/2 stream at once', async t => {
  const { app, session } = await serveHttp2(t, true)
  const streams = Array.from({ length: 20 }, () => openStream(session, { room: '0' }))
  await eventually(() => app.comet.stats().streams.open === 20)
  await within(app.close(), 3000, 'close() with 20 HTTP/2 streams')
  await within(Promise.all(streams.map(s => s.ended)), 1000, 'every stream\'s end')
  t.match(app.comet.stats().streams, { open: 0, ended: { close: 20 } })
})
