// The plugin behind HTTP/2 (Fastify({ http2: true }), cleartext h2c here): a poll is woken over an
// HTTP/2 stream, a reset stream forgets its poll, and close() is prompt with
// forceCloseConnections: true, the setting docs/operations.md gives for HTTP/2.
import http2 from 'node:http2'
import t from 'tap'
import { eventually, serveHttp2, sleep, subscribeQuery, type PollReply } from './helpers.js'

/** A subscribe on one stream of the session; resolves to the status and the parsed reply. */
function poll (session: http2.ClientHttp2Session, cursors: Record<string, string>): { stream: http2.ClientHttp2Stream, reply: Promise<{ status: number, body: PollReply }> } {
  const stream = session.request({ ':path': `/comet/subscribe?${subscribeQuery(cursors)}` })
  const reply = new Promise<{ status: number, body: PollReply }>((resolve, reject) => {
    let status = 0
    let body = ''
    stream.on('response', headers => { status = Number(headers[':status']) })
    stream.setEncoding('utf8')
    stream.on('data', (chunk: string) => { body += chunk })
    stream.on('end', () => {
      try {
        resolve({ status, body: JSON.parse(body) as PollReply })
      } catch (error) {
        reject(error)
      }
    })
    stream.on('error', reject)
  })
  return { stream, reply }
}

t.test('a poll waiting on an HTTP/2 stream is woken by a publish', async t => {
  const { app, session } = await serveHttp2(t)
  const { reply } = poll(session, { room: '0' })
  // A second poll shares the session: HTTP/2 multiplexes them on one connection.
  const other = poll(session, { room: '0', lobby: '0' })
  await eventually(() => app.comet.stats().pending === 2)
  const { id } = await app.comet.publish('room', { hello: 'h2' })
  const [first, second] = await Promise.all([reply, other.reply])
  t.equal(first.status, 200)
  t.same(first.body.m, { room: [{ id, data: { hello: 'h2' } }] })
  t.same(second.body.m, { room: [{ id, data: { hello: 'h2' } }] })
})

t.test('a reset stream forgets its poll at once, and the session goes on', async t => {
  const { app, session } = await serveHttp2(t)
  const { stream, reply } = poll(session, { room: '0' })
  reply.catch(() => {})
  await eventually(() => app.comet.stats().pending === 1)
  stream.close(http2.constants.NGHTTP2_CANCEL)
  await eventually(() => app.comet.stats().pending === 0)
  t.equal(app.comet.stats().hangUps, 1)
  t.equal(app.comet.stats().channels, 0, 'its channel is released')

  const next = poll(session, { room: '0' })
  await eventually(() => app.comet.stats().pending === 1)
  await app.comet.publish('room', 'still here')
  t.same((await next.reply).body.m?.room?.map(e => e.data), ['still here'])
})

t.test('with forceCloseConnections: true, close() answers the poll and ends though the session stays open', async t => {
  const { app, session } = await serveHttp2(t, true)
  const { reply } = poll(session, { room: '0' })
  await eventually(() => app.comet.stats().pending === 1)
  // A deadline far below the poll's 40 s: close() must not wait for the client to leave.
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<string>(resolve => { timer = setTimeout(() => resolve('still closing'), 10_000) })
  const closed = await Promise.race([app.close().then(() => 'closed'), deadline])
  clearTimeout(timer)
  t.equal(closed, 'closed')
  const { status, body } = await reply
  t.equal(status, 200)
  t.equal(body.s, 0)
})

t.test('without it, close() waits for the client to end its HTTP/2 session', async t => {
  const { app, session } = await serveHttp2(t)
  const { reply } = poll(session, { room: '0' })
  await eventually(() => app.comet.stats().pending === 1)
  let closed = false
  const closing = app.close().then(() => { closed = true })
  t.equal((await reply).body.s, 0, 'the poll is answered at once all the same')
  await sleep(200)
  t.equal(closed, false, 'the open session holds close() back')
  session.close()
  await closing
  t.equal(closed, true, 'until the client closes it')
})
