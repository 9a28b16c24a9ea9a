// Streaming (Server-Sent Events) over real sockets: the frame format, the first comment and the
// heartbeats, Last-Event-ID, gaps, the same errors as a poll, hang-up, lifetime, and close.
import diagnostics from 'node:diagnostics_channel'
import http from 'node:http'
import type { FastifyRequest } from 'fastify'
import t, { type Test } from 'tap'
import { diagnosticsChannels, type StreamEndMessage } from '../plugin.js'
import { closeServer, eventually, poll, serve, within } from './helpers.js'
import { openStream, type OpenedStream } from './sse-client.js'

/** Opens a stream and closes it when the test ends. */
async function streamOf (t: Test, origin: string, cursors: Record<string, string>, init?: Parameters<typeof openStream>[2]): Promise<OpenedStream> {
  const stream = await openStream(origin, cursors, init)
  t.teardown(() => { stream.close() })
  return stream
}

t.test('a stream answers 200 text/event-stream with a comment, retry and its cursors at once, then one message per event, as a poll delivers it', async t => {
  const { app, origin } = await serve(t, { historySize: 10 })
  const earlier = await app.comet.publish('room', { n: 0 })
  const opened = listen(t, diagnosticsChannels.streamOpen)
  const stream = await streamOf(t, origin, { room: '0', lobby: '0' })
  t.equal(stream.status, 200)
  t.same(opened, [{ channels: ['room', 'lobby'] }], 'the stream-open diagnostics channel names its channels')
  t.match(stream.headers, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', 'x-accel-buffering': 'no' })
  await stream.until(p => p.messages.length === 1)
  t.equal(stream.parser.comments.length, 1, 'a comment before anything else')
  const [opening] = stream.parser.messages
  t.match(opening, { event: 'message', data: '', retry: 1000 }, 'the first message has no data: an EventSource dispatches nothing for it')
  t.match(opening?.id, /^room=[^,]+,lobby=[^,]+$/, 'and names the cursor of every channel')

  const { id } = await app.comet.publish('room', { n: 1, text: 'héllo\nworld' })
  await app.comet.publish('lobby', 'hi')
  await stream.until(p => p.messages.length === 3)
  const polled = await poll(origin, { room: earlier.id })
  t.same(stream.events(), [
    { channel: 'room', id, data: { n: 1, text: 'héllo\nworld' } },
    { channel: 'lobby', id: stream.events()[1]?.id, data: 'hi' }
  ])
  t.same(polled.body.m?.room, [{ id, data: { n: 1, text: 'héllo\nworld' } }], 'the same id and data as a poll gets')
  t.match(stream.parser.messages[1]?.id, new RegExp(`^room=${id.replace(/\./g, '\\.')},lobby=`), 'each message id carries the cursor of its event')
  t.match(app.comet.stats().streams, { open: 1, messages: 3 })
})

t.test('a stream sends a comment every heartbeat seconds', async t => {
  const { origin } = await serve(t, { heartbeat: 0.02 })
  const stream = await streamOf(t, origin, { quiet: '0' })
  await stream.until(p => p.comments.length >= 4)
  t.same(stream.parser.comments.slice(1, 4), ['', '', ''], 'empty comments after the opening one')
  t.equal(stream.parser.messages.length, 1, 'and nothing else')
})

t.test('Last-Event-ID resumes every channel right after the last event received: nothing lost, nothing repeated', async t => {
  const { app, origin } = await serve(t)
  const first = await streamOf(t, origin, { a: '0', b: '0' })
  await first.until(p => p.messages.length === 1)
  await app.comet.publish('a', 'a1')
  await app.comet.publish('b', 'b1')
  await app.comet.publish('a', 'a2')
  await first.until(p => p.messages.length === 4)
  // The client has seen a1 and b1 but not a2 (say, the connection died just before it).
  const afterB1 = first.parser.messages[2]?.id as string
  first.close()
  await app.comet.publish('b', 'b2')
  const resumed = await streamOf(t, origin, { a: '0', b: '0' }, { lastEventId: afterB1 })
  await resumed.until(p => p.messages.length === 3)
  t.same(resumed.events().map(e => e.data), ['a2', 'b2'])

  // A channel of the query that the id does not name keeps the query's cursor.
  const afterA1 = first.parser.messages[1]?.id?.split(',')[0] as string
  const partly = await streamOf(t, origin, { a: '0', b: 'all' }, { lastEventId: afterA1 })
  await partly.until(p => p.messages.length === 4)
  t.same(partly.events().map(e => e.data), ['a2', 'b1', 'b2'])

  // A stream that drops before its first event resumes from where it opened, not from "now".
  const quiet = await streamOf(t, origin, { c: '0' })
  await quiet.until(p => p.messages.length === 1)
  quiet.close()
  await app.comet.publish('c', 'while away')
  const back = await streamOf(t, origin, { c: '0' }, { lastEventId: quiet.parser.lastEventId })
  await back.until(p => p.messages.length === 2)
  t.same(back.events().map(e => e.data), ['while away'])
})

t.test('a gap is a message of its own, before the events that follow; a cursor of another instance reads as a gap', async t => {
  const { app, origin } = await serve(t, { historySize: 2 })
  const { id: first } = await app.comet.publish('news', 1)
  for (const n of [2, 3, 4]) await app.comet.publish('news', n)
  const { id: firstMore } = await app.comet.publish('more', 'm1')
  for (const n of ['m2', 'm3', 'm4']) await app.comet.publish('more', n)
  const stream = await streamOf(t, origin, { news: first, other: '0', more: firstMore })
  await stream.until(p => p.messages.length === 6)
  t.same(stream.parser.messages.slice(1).map(m => m.event), ['gap', 'message', 'message', 'message', 'message'])
  t.same(stream.gaps(), [['news', 'more']], 'one gap message names every channel that lost events')
  t.same(stream.events().map(e => e.data), [3, 4, 'm3', 'm4'])
  t.match(stream.parser.messages[1]?.id, `news=${first},other=`, 'a client that reconnects right after the gap is told of it again')

  const foreign = first.replace(/^[^.]+/, 'AAAAAAAA')
  const resumed = await streamOf(t, origin, { news: '0' }, { lastEventId: `news=${foreign}` })
  await resumed.until(p => p.messages.length === 4)
  t.same(resumed.gaps(), [['news']])
  t.same(resumed.events().map(e => e.data), [3, 4])
})

t.test('a stream gets the same coded errors as a poll, and a bad Last-Event-ID a coded 400', async t => {
  const { app, origin } = await serve(t, {
    maxChannels: 2,
    maxStreams: 1,
    authorizeSubscribe: (request: FastifyRequest, channel: string) => channel !== 'secret'
  })
  const cases: Array<[string, Record<string, string>, string | undefined, number, string]> = [
    ['a bad cursor', { a: 'not-a-cursor' }, undefined, 400, 'FST_COMET_INVALID_CURSOR'],
    ['a bad channel name', { 'a b': '0' }, undefined, 400, 'FST_COMET_INVALID_CHANNEL'],
    ['too many channels', { a: '0', b: '0', c: '0' }, undefined, 400, 'FST_COMET_TOO_MANY_CHANNELS'],
    ['a refused channel', { secret: '0' }, undefined, 403, 'FST_COMET_FORBIDDEN'],
    ['a malformed Last-Event-ID', { a: '0' }, 'garbage', 400, 'FST_COMET_INVALID_LAST_EVENT_ID'],
    ['a Last-Event-ID naming a channel twice', { a: '0' }, 'a=all,a=all', 400, 'FST_COMET_INVALID_LAST_EVENT_ID'],
    ['a Last-Event-ID of another subscribe', { a: '0' }, 'b=all', 400, 'FST_COMET_INVALID_LAST_EVENT_ID'],
    ['a Last-Event-ID with a cursor no engine returns', { a: '0' }, 'a=x.y', 400, 'FST_COMET_INVALID_CURSOR']
  ]
  for (const [what, cursors, lastEventId, status, code] of cases) {
    const answer = await openStream(origin, cursors, lastEventId === undefined ? {} : { lastEventId })
    t.equal(answer.status, status, what)
    t.equal((await answer.body()).code, code, what)
    t.match(answer.headers['content-type'], /^application\/json/, what)
  }
  const noChannel = await fetch(`${origin}/comet/subscribe`, { headers: { accept: 'text/event-stream' } })
  t.equal((await noChannel.json() as { code: string }).code, 'FST_COMET_NO_CHANNEL')

  const open = await streamOf(t, origin, { a: '0' })
  t.equal(open.status, 200)
  const refused = await openStream(origin, { b: '0' })
  t.equal(refused.status, 503, 'maxStreams counts streams')
  t.equal(refused.headers['retry-after'], '2')
  t.equal((await refused.body()).code, 'FST_COMET_TOO_MANY_STREAMS')
  t.equal((await poll(origin, { b: '0' }, { signal: AbortSignal.timeout(50) }).catch(() => 'waits')), 'waits', 'and not polls')
  t.equal(app.comet.stats().streams.open, 1)
})

t.test('a subscribe without text/event-stream in Accept, or with q=0, is a long-poll', async t => {
  const { origin } = await serve(t, { tries: 1, sleep: 0.01 })
  for (const accept of ['application/json', 'text/event-stream;q=0', '*/*']) {
    const answer = await fetch(`${origin}/comet/subscribe?subscribed[a]=0`, { headers: { accept } })
    t.match(answer.headers.get('content-type'), /^application\/json/, accept)
    await answer.arrayBuffer()
  }
  const answer = await openStream(origin, { a: '0' }, { headers: { accept: 'application/json, text/event-stream;q=0.5' } })
  t.equal(answer.headers['content-type'], 'text/event-stream; charset=utf-8')
  answer.close()
})

t.test('a stream whose client hangs up is forgotten at once', async t => {
  const { app, origin } = await serve(t)
  const stream = await streamOf(t, origin, { a: '0', b: '0' })
  await stream.until(p => p.messages.length === 1)
  t.equal(app.comet.stats().channels, 2)
  stream.close()
  await eventually(() => app.comet.stats().streams.open === 0)
  t.match(app.comet.stats().streams.ended, { 'hang-up': 1 })
  await app.comet.publish('a', 'nobody listens')
  t.equal(app.comet.stats().streams.messages, 1, 'nothing is written to a stream that is gone')
})

t.test('a stream ends after its lifetime, at a heartbeat, and its client resumes without loss', async t => {
  const { app, origin } = await serve(t, { heartbeat: 0.02, streamLifetime: 0.1 })
  const stream = await streamOf(t, origin, { a: '0' })
  await app.comet.publish('a', 1)
  await within(stream.ended, 2000, 'the stream\'s end')
  t.match(app.comet.stats().streams, { open: 0, ended: { lifetime: 1 } })
  await app.comet.publish('a', 2)
  const resumed = await streamOf(t, origin, { a: '0' }, { lastEventId: stream.parser.lastEventId })
  await resumed.until(p => p.messages.length === 2)
  t.same(resumed.events().map(e => e.data), [2])
})

t.test('fastify.close() ends 1,000 open streams promptly', async t => {
  const { app, origin } = await serve(t)
  const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity })
  t.teardown(() => agent.destroy())
  const streams: OpenedStream[] = []
  for (let batch = 0; batch < 10; batch++) {
    streams.push(...await Promise.all(Array.from({ length: 100 }, async (_, i) => await openStream(origin, { [`c${i % 7}`]: '0' }, { agent }))))
  }
  await eventually(() => app.comet.stats().streams.open === 1000, 10000)
  const ends = listen(t, diagnosticsChannels.streamEnd)
  await within(closeServer(app), 3000, 'close() with 1,000 streams')
  await within(Promise.all(streams.map(s => s.ended)), 1000, 'every stream\'s end')
  t.equal(ends.length, 1000)
  t.ok(ends.every(end => end.reason === 'close'))
})

function listen (t: Test, name: string): StreamEndMessage[] {
  const messages: StreamEndMessage[] = []
  const listener = (message: unknown): void => { messages.push(message as StreamEndMessage) }
  diagnostics.subscribe(name, listener)
  t.teardown(() => { diagnostics.unsubscribe(name, listener) })
  return messages
}
