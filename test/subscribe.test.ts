import Fastify from 'fastify'
import t from 'tap'
import comet, { MemoryEngine } from '../plugin.js'
import { counters, countersWith, eventually, poll, publish, serve, subscribeQuery, within, type PollReply } from './helpers.js'

t.test('a waiting poll is answered by a publish, not by its timeout', async t => {
  // A 40 s wait (the defaults): only the publish can answer within the test's time.
  const { app, origin } = await serve(t)
  const reply = poll(origin, { room: '0' })
  await eventually(() => app.comet.stats().pending === 1)
  const { id } = await app.comet.publish('room', { text: 'hello' })

  // Far below the 40 s timeout, at which the event would come too, read again.
  const { status, headers, body } = await within(reply, 3000, 'the poll')
  t.equal(status, 200)
  t.equal(headers.get('cache-control'), 'no-store')
  t.match(headers.get('content-type'), /^application\/json/)
  t.same(body, { s: 1, k: { room: id }, m: { room: [{ id, data: { text: 'hello' } }] }, p: { room: id } })
  t.equal(app.comet.stats().pending, 0)
})

t.test('a poll with nothing to deliver is answered after tries × sleep with s=0 and the cursors to send next', async t => {
  const { origin } = await serve(t, { tries: 3, sleep: 0.04 })
  const started = Date.now()
  const { status, body } = await poll(origin, { room: '0', lobby: '' })
  t.ok(Date.now() - started >= 110, 'waited about 3 × 40 ms')
  t.equal(status, 200)
  t.same(Object.keys(body), ['s', 'p'])
  t.equal(body.s, 0)
  t.same(Object.keys(body.p), ['room', 'lobby'])
  t.match(body.p.room, /^[A-Za-z0-9_.~-]{1,64}$/, 'cursors are URL-safe and at most 64 characters')
})

t.test('a poll on several channels reports only the channel that changed, and the next cursor of every one', async t => {
  const { app, origin } = await serve(t, { tries: 1, sleep: 0.05 })
  const idle = await poll(origin, { a: '0', b: '0', c: '0' })
  const reply = poll(origin, idle.body.p)
  await eventually(() => app.comet.stats().pending === 1)
  const { id } = await app.comet.publish('b', 'only b')

  const { body } = await reply
  t.same(body.k, { b: id }, 'k lists only the channel with new events')
  t.same(body.m, { b: [{ id, data: 'only b' }] })
  t.same(Object.keys(body.p), ['a', 'b', 'c'], 'p maps every subscribed channel')
  t.equal(body.p.b, id)

  const next = poll(origin, body.p)
  await eventually(() => app.comet.stats().pending === 1)
  const later = await app.comet.publish('a', 'then a')
  t.same((await next).body.m, { a: [{ id: later.id, data: 'then a' }] }, 'the cursor of an unchanged channel stays valid')
})

t.test('sending back p resumes with no event lost or repeated', async t => {
  const { app, origin } = await serve(t, { tries: 1, sleep: 0.05 })
  let { body } = await poll(origin, { room: '0' })
  t.equal(body.s, 0)

  await app.comet.publish('room', 1)
  ;({ body } = await poll(origin, body.p))
  t.same(body.m?.room?.map(e => e.data), [1])

  // Published while no poll waits: the next poll picks them up from its cursor.
  await app.comet.publish('room', 2)
  await app.comet.publish('room', 3)
  ;({ body } = await poll(origin, body.p))
  t.same(body.m?.room?.map(e => e.data), [2, 3])

  ;({ body } = await poll(origin, body.p))
  t.equal(body.s, 0, 'nothing is delivered twice')

  await app.comet.publish('room', 4)
  ;({ body } = await poll(origin, body.p))
  t.same(body.m?.room?.map(e => e.data), [4], 'a cursor from a timed-out poll still resumes exactly')
})

t.test('wait=0 answers at once with the cursors at "now", and a later publish is delivered from them', async t => {
  // A 40 s wait (the defaults): only wait=0 can answer within the test's time.
  const { app, origin } = await serve(t)
  const response = await within(fetch(`${origin}/comet/subscribe?subscribed[room]=0&wait=0`), 3000, 'the poll')
  const { body } = { body: await response.json() as PollReply }
  t.same(Object.keys(body), ['s', 'p'])
  t.equal(body.s, 0)
  t.equal(app.comet.stats().pending, 0, 'nothing is left waiting')

  // Published before the next poll: the cursor from wait=0 still gets it.
  const { id } = await app.comet.publish('room', 'after now')
  const next = await poll(origin, body.p)
  t.same(next.body.m, { room: [{ id, data: 'after now' }] })

  const held = await (await fetch(`${origin}/comet/subscribe?subscribed[room]=all&wait=0`)).json() as PollReply
  t.same(held.m?.room?.map(e => e.data), ['after now'], 'with news, wait=0 answers with them as any poll does')
})

t.test('"all" asks for every event the channel still holds', async t => {
  const { app, origin } = await serve(t, { tries: 1, sleep: 0.05, historySize: 3 })
  for (const n of [1, 2, 3, 4]) await app.comet.publish('room', n)
  const { body } = await poll(origin, { room: 'all', empty: 'all' })
  t.same(body.m, { room: [2, 3, 4].map(n => ({ id: body.m?.room?.[n - 2]?.id, data: n })) })
  t.notOk(body.gap, 'asking for what is held is no gap')
  t.equal(body.p.room, body.k?.room)
})

t.test('a reply carries at most batchSize events of a channel; the next poll gets the rest at once', async t => {
  const { app, origin } = await serve(t, { tries: 1, sleep: 0.05, batchSize: 2 })
  const { body: start } = await poll(origin, { room: '0' })
  for (const n of [1, 2, 3, 4, 5]) await app.comet.publish('room', n)
  const batches: unknown[][] = []
  let cursors = start.p
  for (let i = 0; i < 3; i++) {
    const { body } = await poll(origin, cursors)
    batches.push(body.m?.room?.map(e => e.data) ?? [])
    cursors = body.p
  }
  t.same(batches, [[1, 2], [3, 4], [5]])
})

t.test('a gap is reported at once, with the events still held, when history evicted some', async t => {
  const { app, origin } = await serve(t, { tries: 1, sleep: 5, historySize: 2 })
  const { id: cursor } = await app.comet.publish('room', 0)
  for (const n of [1, 2, 3]) await app.comet.publish('room', n)
  await app.comet.publish('calm', 'x')
  const { body } = await poll(origin, { room: cursor, calm: 'all' })
  t.same(body.gap, ['room'])
  t.same(body.m?.room?.map(e => e.data), [2, 3], 'whatever is still held')
  t.same(body.m?.calm?.map(e => e.data), ['x'])
})

t.test('a gap with nothing held still answers at once, and moves the cursor past the loss', async t => {
  // A 40 s wait (the defaults), and a deadline far below it: a gap that waited would fail fast.
  const { app, origin } = await serve(t, { historyTtl: 0.05 })
  const { id: cursor } = await app.comet.publish('room', 'soon gone')
  await eventually(() => app.comet.stats().channels === 0)
  const { body } = await within(poll(origin, { room: cursor }), 3000, 'the poll')
  t.same(body, { s: 1, k: {}, m: {}, p: { room: body.p.room }, gap: ['room'] })
  t.not(body.p.room, cursor)
})

t.test('a cursor before events that expired gets a gap, with the events still held, and p moves past the loss', async t => {
  // The engine's clock is the test's: events expire without waiting for them.
  let now = 1_700_000_000_000
  const engine = new MemoryEngine({ historyTtl: 10, now: () => now })
  t.teardown(() => engine.close())
  const { app, origin } = await serve(t, { engine })
  const { id: cursor } = await app.comet.publish('room', 0)
  await app.comet.publish('room', 1)
  now += 6_000
  await app.comet.publish('room', 2)
  now += 5_000
  // Events 0 and 1 are 11 s old, past historyTtl; event 2 is 5 s old. A 40 s wait (the defaults):
  // a reply that is not at once fails the deadline.
  const { body } = await within(poll(origin, { room: cursor }), 3000, 'the poll')
  t.same(body.gap, ['room'], 'event 1 came after the cursor and is gone')
  t.same(body.m?.room?.map(e => e.data), [2], 'whatever is still held')

  const next = await (await fetch(`${origin}/comet/subscribe?${subscribeQuery(body.p)}&wait=0`)).json() as PollReply
  t.same(next, { s: 0, p: { room: next.p.room } }, 'the next poll from p lost nothing more')
})

t.test('a cursor from before a server restart gets a gap, never silence or an error', async t => {
  const before = await serve(t, { tries: 1, sleep: 0.05 })
  const { id } = await before.app.comet.publish('room', 'old')
  await before.app.close()

  const after = await serve(t, { tries: 1, sleep: 5 })
  await after.app.comet.publish('room', 'new')
  const { status, body } = await poll(after.origin, { room: id, lobby: id })
  t.equal(status, 200)
  t.same(body.gap, ['room', 'lobby'])
  t.same(body.m?.room?.map(e => e.data), ['new'])
})

t.test('publish accepts JSON of any kind, plain text, or no body at all', async t => {
  const { app, origin } = await serve(t, { tries: 1, sleep: 0.05 })
  const sent: Array<[string, RequestInit, unknown]> = [
    ['json object', { headers: { 'content-type': 'application/json' }, body: '{"a":[1,2]}' }, { a: [1, 2] }],
    ['json string', { headers: { 'content-type': 'application/json; charset=utf-8' }, body: '"quoted"' }, 'quoted'],
    ['json number', { headers: { 'content-type': 'application/json' }, body: '42' }, 42],
    ['json null', { headers: { 'content-type': 'application/json' }, body: 'null' }, null],
    ['text', { headers: { 'content-type': 'text/plain' }, body: 'plain "text" ünïcode' }, 'plain "text" ünïcode'],
    ['no body', {}, null]
  ]
  for (const [what, init] of sent) {
    const response = await fetch(`${origin}/comet/publish/room`, { method: 'POST', ...init })
    t.equal(response.status, 200, what)
    const { id } = await response.json() as { id: string }
    t.match(id, /^[A-Za-z0-9_.~-]{1,64}$/)
    t.equal(response.headers.get('cache-control'), 'no-store')
  }
  const { body } = await poll(origin, { room: 'all' })
  t.same(body.m?.room?.map(e => e.data), sent.map(([, , data]) => data))
  t.equal(app.comet.stats().published, sent.length)
})

t.test('every valid channel name behaves the same way', async t => {
  const { app, origin } = await serve(t, { tries: 1, sleep: 0.05 })
  const names = ['__proto__', 'constructor', 'hasOwnProperty', '.', '..', 'a:b@c.d-e_f', '0', 'x'.repeat(128)]
  for (const name of names) {
    const init = { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ on: name }) }
    // fetch resolves "." and ".." in a path (even as %2E) before sending, so the query form is for every name.
    const inQuery = await fetch(`${origin}/comet/publish?channel=${name}`, init)
    t.equal(inQuery.status, 200, `publish on ${JSON.stringify(name)} in the query string`)
    if (name !== '.' && name !== '..') {
      const inPath = await fetch(`${origin}/comet/publish/${name}`, init)
      t.equal(inPath.status, 200, `publish on ${JSON.stringify(name)} in the path`)
    }
  }
  const { body } = await poll(origin, Object.fromEntries(names.map(name => [name, 'all'])))
  for (const name of names) {
    const expected = name === '.' || name === '..' ? [{ on: name }] : [{ on: name }, { on: name }]
    t.same(body.m?.[name]?.map(e => e.data), expected, `subscribe to ${JSON.stringify(name)}`)
  }
  t.same(Object.keys(body.p).sort(), [...names].sort())
  t.equal(app.comet.stats().channels, names.length)
})

t.test('stats count published and delivered events, and waiting polls', async t => {
  const { app, origin } = await serve(t, { tries: 1, sleep: 0.05 })
  const waiting = [poll(origin, { a: '0' }), poll(origin, { a: '0', b: '0' })]
  await eventually(() => app.comet.stats().pending === 2)
  t.same(counters(app.comet.stats()), countersWith({ channels: 2, pending: 2 }))
  await app.comet.publish('a', 'x')
  await Promise.all(waiting)
  t.same(counters(app.comet.stats()), countersWith({ channels: 1, published: 1, delivered: 2, answered: { events: 2, timeout: 0, wait0: 0, close: 0, superseded: 0 } }))
})

t.test('"." and ".." also work in the publish path when the client sends the path as it is', async t => {
  const { app, origin } = await serve(t, { tries: 1, sleep: 0.05 })
  const { request } = await import('node:http')
  const { hostname, port } = new URL(origin)
  for (const path of ['/comet/publish/.', '/comet/publish/%2E%2E']) {
    const status = await new Promise<number | undefined>((resolve, reject) => {
      // Options, not a URL string: a URL string would be normalised too.
      request({ hostname, port, path, method: 'POST' }, response => {
        response.resume()
        resolve(response.statusCode)
      }).on('error', reject).end()
    })
    t.equal(status, 200, path)
  }
  const { body } = await poll(origin, { '.': 'all', '..': 'all' })
  t.same(Object.keys(body.m ?? {}), ['.', '..'])
  t.equal(app.comet.stats().published, 2)
})

t.test('a server whose query-string parser nests subscribed[<channel>] (like qs) works the same', async t => {
  // What qs makes of subscribed[a]=x&subscribed[b]=y: { subscribed: { a: 'x', b: 'y' } }.
  function nestingParser (query: string): Record<string, unknown> {
    const parsed: Record<string, unknown> = {}
    const subscribed: Record<string, string> = {}
    for (const [key, value] of new URLSearchParams(query)) {
      const channel = /^subscribed\[(.*)\]$/.exec(key)?.[1]
      if (channel === undefined) parsed[key] = value
      else subscribed[channel] = value
    }
    if (Object.keys(subscribed).length > 0) parsed.subscribed = subscribed
    return parsed
  }
  const app = Fastify({ routerOptions: { querystringParser: nestingParser } })
  t.teardown(() => app.close())
  await app.register(comet, { tries: 1, sleep: 0.01 })
  const { id } = await app.comet.publish('room', 'nested')
  const reply = await app.inject('/comet/subscribe?subscribed[room]=all&subscribed[lobby]=0')
  t.same(reply.json().m, { room: [{ id, data: 'nested' }] })
  t.same(Object.keys(reply.json().p), ['room', 'lobby'])
  const bad = await app.inject('/comet/subscribe?subscribed[a%20b]=0')
  t.match(bad.json(), { statusCode: 400, code: 'FST_COMET_INVALID_CHANNEL', message: /"a b"/ })
  const badCursor = await app.inject('/comet/subscribe?subscribed[room]=%24')
  t.match(badCursor.json(), { statusCode: 400, code: 'FST_COMET_INVALID_CURSOR', message: /channel "room"/ })
})

t.test('HEAD on subscribe answers at once and holds no poll', async t => {
  // Regression: Fastify's automatic HEAD route ran the handler and held a real long-poll.
  const { app, origin } = await serve(t)
  // A deadline far below the 40 s poll timeout of the defaults.
  const response = await fetch(`${origin}/comet/subscribe?subscribed[room]=0`, { method: 'HEAD', signal: AbortSignal.timeout(2000) })
  t.equal(response.status, 200)
  t.equal(response.headers.get('cache-control'), 'no-store')
  t.match(response.headers.get('content-type'), /^application\/json/)
  t.same(counters(app.comet.stats()), countersWith({}))
})

t.test('an engine that fails a read with something other than an Error: the poll gets a 500 in Fastify\'s format', async t => {
  class StrangeEngine extends MemoryEngine {
    override read (): never {
      throw 'not an Error'
    }
  }
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(comet, { engine: new StrangeEngine() })
  const response = await app.inject(`/comet/subscribe?${subscribeQuery({ room: '0' })}`)
  t.equal(response.statusCode, 500)
  t.match(response.json(), { statusCode: 500, error: 'Internal Server Error' })
})

t.test('a channel named both flat and nested (a query-string parser that gives both) is read once, from the cursor named last, the nested one', async t => {
  const app = Fastify({ routerOptions: { querystringParser: () => ({ 'subscribed[room]': 'all', subscribed: { room: '0' }, wait: '0' }) } })
  t.teardown(() => app.close())
  await app.register(comet)
  const { id } = await app.comet.publish('room', 'kept')
  const response = await app.inject('/comet/subscribe')
  t.equal(response.statusCode, 200)
  t.same(response.json(), { s: 0, p: { room: id } }, 'read from now, not from all held')
  t.equal(response.body.match(/"room"/g)?.length, 1, 'the channel once in the reply')
})
