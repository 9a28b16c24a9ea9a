// The client against a real server: one poll for all channels, cursors kept across polls, changes
// of channels and server restarts, with no event lost or repeated.
import Fastify from 'fastify'
import t, { type Test } from 'tap'
import { CometClient, type CometClientOptions, type CometClientState, type CometEvent } from '../lib/client/client.js'
import comet, { type CometOptions } from '../plugin.js'
import { closeServer, eventually, serve, sleep, within } from './helpers.js'

/** A client of `origin`, closed when the test ends, that records its states and gaps. */
function clientOf (t: Test, origin: string, options: CometClientOptions = {}): { client: CometClient, states: CometClientState[], gaps: string[][] } {
  const states: CometClientState[] = []
  const gaps: string[][] = []
  const client = new CometClient({
    url: `${origin}/comet`,
    retry: { initialDelay: 20, maxDelay: 100 },
    onStateChange: state => { states.push(state) },
    onGap: channels => { gaps.push(channels) },
    ...options
  })
  t.teardown(() => { client.close() })
  return { client, states, gaps }
}

/** A listener that keeps what it is given. */
function recorder (): { events: Array<{ data: unknown, event: CometEvent }>, data: unknown[], listener: (data: unknown, event: CometEvent) => void } {
  const events: Array<{ data: unknown, event: CometEvent }> = []
  return {
    events,
    get data () { return events.map(e => e.data) },
    listener: (data, event) => { events.push({ data, event }) }
  }
}

t.test('a subscribed listener gets each event published after ready, with its channel and id', async t => {
  const { app, origin } = await serve(t)
  const { client, states } = clientOf(t, origin)
  t.equal(client.state, 'idle')
  const room = recorder()
  // Far below the 40 s a poll waits: a first poll that waited would fail here, not pass slowly.
  await within(client.subscribe('room', room.listener).ready, 3000, 'ready')
  t.same(states, ['connecting', 'connected'], 'the first poll is answered at once (wait=0)')

  const { id } = await app.comet.publish('room', { text: 'hello' })
  await eventually(() => room.events.length === 1)
  t.same(room.events, [{ data: { text: 'hello' }, event: { channel: 'room', id } }])
})

t.test('every channel shares one long-poll', async t => {
  const { app, origin } = await serve(t)
  let inFlight = 0
  let mostInFlight = 0
  const { client } = clientOf(t, origin, {
    fetch: async (input, init) => {
      mostInFlight = Math.max(mostInFlight, ++inFlight)
      try {
        const response = await fetch(input, init)
        // Read here, so that the poll counts as in flight until its answer is in.
        return new Response(await response.arrayBuffer(), { status: response.status, headers: response.headers })
      } finally {
        inFlight--
      }
    }
  })
  const [a, b, c] = [recorder(), recorder(), recorder()]
  await Promise.all([
    client.subscribe('a', a.listener).ready,
    client.subscribe('b', b.listener).ready,
    client.subscribe('c', c.listener).ready
  ])
  await eventually(() => app.comet.stats().pending === 1)
  await app.comet.publish('b', 'to b')
  await app.comet.publish('c', 'to c')
  await eventually(() => c.data.length === 1)
  t.same([a.data, b.data, c.data], [[], ['to b'], ['to c']])
  await eventually(() => app.comet.stats().pending === 1)
  t.equal(mostInFlight, 1, 'never more than one poll at a time')
})

t.test('subscribing and unsubscribing other channels while events flow loses and repeats nothing', async t => {
  const { app, origin } = await serve(t)
  const { client } = clientOf(t, origin)
  const steady = recorder()
  await client.subscribe('steady', steady.listener).ready
  const sent: number[] = []
  for (let n = 1; n <= 60; n++) {
    await app.comet.publish('steady', n)
    sent.push(n)
    // Each change of channels restarts the poll, sometimes while an answer is on its way.
    if (n % 3 === 0) client.subscribe(`other${n}`, () => {})
    if (n % 3 === 1 && n > 1) client.unsubscribe(`other${n - 1}`)
    if (n % 7 === 0) await sleep(1)
  }
  // A last event after all the others: once it is in, everything before it is, and a repeat from a
  // stale cursor would have come with it.
  await app.comet.publish('steady', 'end')
  await eventually(() => steady.data.includes('end'))
  t.same(steady.data, [...sent, 'end'], 'every event once, in order')
})

t.test('an answer that arrives after its poll was aborted moves no cursor, and its events come on the next poll', async t => {
  // Regression: the client moved its cursors as soon as an answer was read, even an answer whose
  // poll a change of channels had aborted meanwhile, and the events that answer carried were lost.
  const { app, origin } = await serve(t)
  const polls: URL[] = []
  let race: { polls: number, answer?: string, otherReady?: Promise<void> | undefined } | undefined
  const late: { client?: CometClient } = {}
  const { client } = clientOf(t, origin, {
    fetch: async (input, init) => {
      polls.push(new URL(String(input)))
      const response = await fetch(input, init)
      if (race === undefined || race.otherReady !== undefined) return response
      // The answer is read in full; the channels change (which aborts this poll); only then does
      // the client get the answer.
      const body = await response.text()
      race.polls = polls.length
      race.answer = body
      race.otherReady = late.client?.subscribe('other', () => {}).ready
      return new Response(body, { status: response.status, headers: response.headers })
    }
  })
  late.client = client
  const delivered: Array<{ data: unknown, onPoll: number }> = []
  await client.subscribe('room', data => { delivered.push({ data, onPoll: polls.length }) }).ready
  await eventually(() => app.comet.stats().pending === 1)
  race = { polls: 0 }
  await app.comet.publish('room', 'raced')
  await eventually(() => race?.otherReady !== undefined)
  await race.otherReady

  const aborted = polls[race.polls - 1] as URL
  const next = polls[race.polls] as URL
  t.same(aborted.searchParams.getAll('subscribed[other]'), [], 'the aborted poll was the one waiting on room alone')
  t.match(JSON.parse(race.answer ?? ''), { m: { room: [{ data: 'raced' }] } }, 'and its answer carried the event')
  t.equal(next.searchParams.get('subscribed[room]'), aborted.searchParams.get('subscribed[room]'), 'the next poll asks for room from the same cursor')
  t.same(delivered, [{ data: 'raced', onPoll: race.polls + 1 }], 'the event comes once, on the next poll')

  // A later event comes after it, and nothing else with it.
  await eventually(() => app.comet.stats().pending === 1)
  await app.comet.publish('room', 'marker')
  await eventually(() => delivered.some(d => d.data === 'marker'))
  t.same(delivered.map(d => d.data), ['raced', 'marker'])
})

t.test('history: true delivers what the channel holds before ready, then what comes next', async t => {
  const { app, origin } = await serve(t)
  await app.comet.publish('chat', 'earlier 1')
  await app.comet.publish('chat', 'earlier 2')
  const { client } = clientOf(t, origin)
  const chat = recorder()
  await client.subscribe('chat', chat.listener, { history: true }).ready
  t.same(chat.data, ['earlier 1', 'earlier 2'])
  await app.comet.publish('chat', 'later')
  await eventually(() => chat.data.length === 3)
  t.same(chat.data, ['earlier 1', 'earlier 2', 'later'])
})

t.test('a second listener asking for history before the channel is ready gets it too', async t => {
  const { app, origin } = await serve(t)
  await app.comet.publish('chat', 'held')
  const { client } = clientOf(t, origin)
  const [first, second] = [recorder(), recorder()]
  client.subscribe('chat', first.listener)
  await client.subscribe('chat', second.listener, { history: true }).ready
  t.same([first.data, second.data], [['held'], ['held']])
})

t.test('a listener added to a ready channel is ready at once and gets only new events', async t => {
  const { app, origin } = await serve(t)
  const { client } = clientOf(t, origin)
  const [first, second] = [recorder(), recorder()]
  await client.subscribe('room', first.listener).ready
  await app.comet.publish('room', 1)
  await eventually(() => first.data.length === 1)
  await client.subscribe('room', second.listener, { history: true }).ready
  await app.comet.publish('room', 2)
  await eventually(() => second.data.length === 1)
  t.same([first.data, second.data], [[1, 2], [2]])
})

t.test('across poll timeouts nothing is lost or repeated', async t => {
  // Each poll waits 120 ms: events come before, between and after timeouts.
  const { app, origin } = await serve(t, { tries: 2, sleep: 0.06 })
  const { client } = clientOf(t, origin)
  const room = recorder()
  await client.subscribe('room', room.listener).ready
  for (let n = 1; n <= 10; n++) {
    await app.comet.publish('room', n)
    await sleep(37)
  }
  await app.comet.publish('room', 'end')
  await eventually(() => room.data.includes('end'))
  t.same(room.data, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 'end'])
})

t.test('unsubscribing stops a listener; leaving the last channel ends polling', async t => {
  const { app, origin } = await serve(t)
  const { client, states } = clientOf(t, origin)
  const [kept, dropped] = [recorder(), recorder()]
  await client.subscribe('room', kept.listener).ready
  const subscription = client.subscribe('room', dropped.listener)
  subscription.unsubscribe()
  subscription.unsubscribe()
  await app.comet.publish('room', 1)
  await eventually(() => kept.data.length === 1)
  t.same(dropped.data, [], 'the unsubscribed listener is not called')

  client.unsubscribe('room')
  client.unsubscribe('never subscribed')
  await eventually(() => app.comet.stats().pending === 0)
  await eventually(() => client.state === 'idle')
  t.same(states, ['connecting', 'connected', 'idle'])
  await app.comet.publish('room', 2)
  t.same(kept.data, [1])

  await client.subscribe('room', kept.listener).ready
  t.equal(client.state, 'connected', 'subscribing again starts polling again')
  await app.comet.publish('room', 3)
  await eventually(() => kept.data.includes(3))
  t.same(kept.data, [1, 3], 'nothing published while the channel was left')
})

t.test('a listener may unsubscribe from inside a delivery: it gets nothing more, the others go on', async t => {
  const { app, origin } = await serve(t)
  const { client } = clientOf(t, origin)
  const seen: string[] = []
  const once = client.subscribe('room', data => {
    seen.push(`once ${String(data)}`)
    once.unsubscribe()
  })
  client.subscribe('room', data => { seen.push(`all ${String(data)}`) })
  client.subscribe('other', data => {
    seen.push(`other ${String(data)}`)
    client.unsubscribe('other')
    client.unsubscribe('last')
  })
  client.subscribe('last', data => { seen.push(`last ${String(data)}`) })
  await once.ready
  await app.comet.publish('room', 1)
  await app.comet.publish('room', 2)
  await app.comet.publish('other', 1)
  await app.comet.publish('other', 2)
  await app.comet.publish('last', 1)
  await eventually(() => seen.includes('all 2') && seen.includes('other 1'))
  // Published after all the others: a channel still polled would have brought its events with it.
  await app.comet.publish('room', 3)
  await eventually(() => seen.includes('all 3'))
  t.same(seen.filter(s => !s.startsWith('other')), ['once 1', 'all 1', 'all 2', 'all 3'])
  t.same(seen.filter(s => s.startsWith('other')), ['other 1'], 'a channel left gets nothing more, even from the answer being delivered')
  t.same(seen.filter(s => s.startsWith('last')), [], 'nor does a channel left by another channel\'s listener')
})

t.test('ready rejects when the subscription ends before the server answered', async t => {
  const { origin } = await serve(t)
  const { client } = clientOf(t, origin)
  const byListener = client.subscribe('a', () => {})
  byListener.unsubscribe()
  await t.rejects(byListener.ready, { code: 'FST_COMET_CLIENT_UNSUBSCRIBED' })
  const byChannel = client.subscribe('b', () => {})
  client.unsubscribe('b')
  await t.rejects(byChannel.ready, { code: 'FST_COMET_CLIENT_UNSUBSCRIBED', message: /unsubscribed from "b" before it was ready/ })
  const byClose = client.subscribe('c', () => {})
  client.close()
  await t.rejects(byClose.ready, { name: 'CometClientError', code: 'FST_COMET_CLIENT_CLOSED' })
  // A ready that nobody waits for rejects without an unhandled rejection (which would fail the test).
  const ignored = new CometClient({ url: `${origin}/comet` })
  ignored.subscribe('d', () => {})
  ignored.close()
  await sleep(10)
})

t.test('close ends the poll in flight at once, and the client for good', async t => {
  const { app, origin } = await serve(t)
  const fetches: Array<Promise<Response>> = []
  const { client, states } = clientOf(t, origin, {
    fetch: async (input, init) => {
      const fetching = fetch(input, init)
      fetches.push(fetching)
      return fetching
    }
  })
  const room = recorder()
  await client.subscribe('room', room.listener).ready
  await eventually(() => app.comet.stats().pending === 1)
  const polled = fetches.length
  client.close()
  client.close()
  await eventually(() => app.comet.stats().pending === 0)
  t.equal(client.state, 'closed')
  t.same(states, ['connecting', 'connected', 'closed'])
  await app.comet.publish('room', 'after close')
  // The poll close() aborted has failed; a loop still going would have asked again before the next turn.
  await Promise.allSettled(fetches)
  await new Promise(resolve => setImmediate(resolve))
  t.equal(fetches.length, polled, 'no poll after close')
  t.same(room.data, [])
  t.throws(() => client.subscribe('room', () => {}), { code: 'FST_COMET_CLIENT_CLOSED', message: /closed; create a new one/ })
  await t.rejects(client.publish('room', 1), { code: 'FST_COMET_CLIENT_CLOSED' })
})

t.test('publish posts through the publish route and returns the id', async t => {
  const { app, origin } = await serve(t)
  const { client } = clientOf(t, origin)
  const room = recorder()
  await client.subscribe('room', room.listener).ready
  const { id } = await client.publish('room', { text: 'from the client' })
  await client.publish('room')
  await eventually(() => room.events.length === 2)
  t.same(room.events[0], { data: { text: 'from the client' }, event: { channel: 'room', id } })
  t.equal(room.data[1], null, 'no data is published as null')

  const dots = recorder()
  await client.subscribe('..', dots.listener).ready
  await client.publish('..', 'dot dot')
  await eventually(() => dots.data.length === 1)
  t.same(dots.data, ['dot dot'], 'the names "." and ".." work: the channel goes in the query string')
  t.equal(app.comet.stats().published, 3)
})

t.test('a refused publish rejects with the server\'s code, status and message', async t => {
  const { origin } = await serve(t, { authorizePublish: () => false, maxPayload: 10 })
  const { client } = clientOf(t, origin)
  await t.rejects(client.publish('room', 1), { name: 'CometClientError', code: 'FST_COMET_FORBIDDEN', statusCode: 403, message: /not allowed to publish to channel "room"/ })
})

t.test('bad arguments throw at once, saying what is wrong', async t => {
  const { origin } = await serve(t)
  const { client } = clientOf(t, origin)
  t.throws(() => client.subscribe('a b', () => {}), { code: 'FST_COMET_INVALID_CHANNEL', message: /invalid channel name "a b"; a channel name has 1 to 128 characters/ })
  t.throws(() => client.subscribe('x'.repeat(129), () => {}), { code: 'FST_COMET_INVALID_CHANNEL' })
  t.throws(() => client.subscribe('room', 'not a function' as never), TypeError)
  await t.rejects(client.publish('', 1), { code: 'FST_COMET_INVALID_CHANNEL' })
  t.throws(() => new CometClient(), { name: 'TypeError', message: /url must be absolute outside a browser, such as "http:\/\/localhost:3000\/comet" \(got "\/comet"\)/ })
  t.throws(() => new CometClient({ url: origin, retry: { initialDelay: -1 } }), { message: /retry.initialDelay must be a number of milliseconds \(got -1\)/ })
  t.throws(() => new CometClient({ url: origin, retry: { maxDelay: Infinity } }), { message: /retry.maxDelay/ })
  t.equal(client.state, 'idle', 'nothing was subscribed')
})

t.test('in a page, a relative url resolves against the page\'s address', async t => {
  const { app, origin } = await serve(t, { prefix: '/live' })
  const page = globalThis as { location?: { href: string } }
  page.location = { href: `${origin}/chat/index.html` }
  t.teardown(() => { delete page.location })
  const asked: string[] = []
  const { client } = clientOf(t, origin, {
    url: '/live/',
    fetch: async (input, init) => {
      asked.push(String(input))
      return fetch(input, init)
    }
  })
  const room = recorder()
  await client.subscribe('room', room.listener).ready
  await app.comet.publish('room', 'via a relative url')
  await eventually(() => room.data.length === 1)
  t.same(room.data, ['via a relative url'])
  t.match(asked[0], `${origin}/live/subscribe?`, 'the page\'s origin and the prefix, with "subscribe" under it')
})

t.test('a server restart: the client reconnects by itself and reports the gap', async t => {
  const first = await serve(t)
  const port = Number(new URL(first.origin).port)
  const { client, states, gaps } = clientOf(t, first.origin)
  const room = recorder()
  await client.subscribe('room', room.listener).ready
  await first.app.comet.publish('room', 'before')
  await eventually(() => room.data.length === 1)

  await closeServer(first.app)
  await eventually(() => client.state === 'reconnecting')
  const second = Fastify()
  await second.register(comet)
  t.teardown(() => closeServer(second))
  await second.listen({ port, host: '127.0.0.1' })

  await eventually(() => client.state === 'connected', 5000)
  t.same(gaps, [['room']], 'the cursors of the old instance mean a gap')
  await eventually(() => second.comet.stats().pending === 1)
  await second.comet.publish('room', 'after')
  await eventually(() => room.data.length === 2)
  t.same(room.data, ['before', 'after'])
  t.match(states, ['connecting', 'connected', 'reconnecting', 'connected'])
})

t.test('a gap from evicted history is reported before the events still held', async t => {
  const options: CometOptions = { historySize: 2 }
  const { app, origin } = await serve(t, options)
  let offline = false
  const order: string[] = []
  const { client } = clientOf(t, origin, {
    fetch: async (input, init) => {
      if (offline) throw new TypeError('fetch failed')
      return fetch(input, init)
    },
    onGap: channels => { order.push(`gap ${channels.join()}`) }
  })
  await client.subscribe('room', data => { order.push(String(data)) }).ready
  await eventually(() => app.comet.stats().pending === 1)
  offline = true
  app.server.closeAllConnections()
  await eventually(() => client.state === 'reconnecting')
  for (const n of [1, 2, 3, 4, 5]) await app.comet.publish('room', n)
  offline = false
  await eventually(() => order.length === 3)
  t.same(order, ['gap room', '4', '5'])
})

t.test('render then subscribe: after the position read before rendering, exactly the events published since, in order, once', async t => {
  const { app, origin } = await serve(t)
  await app.comet.publish('room', 'rendered 1')
  await app.comet.publish('room', 'rendered 2')
  // What a page rendered on the server does: the position first, then what it shows.
  const position = await app.comet.position('room')
  const shown = (await app.comet.history('room', { limit: 100 })).events.map(event => event.data)
  t.same(shown, ['rendered 1', 'rendered 2'])
  await app.comet.publish('room', 'between 1')
  await app.comet.publish('room', 'between 2')

  const { client, gaps } = clientOf(t, origin)
  const room = recorder()
  await client.subscribe('room', room.listener, { after: position }).ready
  t.same(room.data, ['between 1', 'between 2'], 'what came between render and subscribe, before ready')
  await app.comet.publish('room', 'later')
  await eventually(() => room.data.length === 3)
  await sleep(50)
  t.same(room.data, ['between 1', 'between 2', 'later'])
  t.same(gaps, [])
})

t.test('after a position of an empty channel: the first event published', async t => {
  const { app, origin } = await serve(t)
  const position = await app.comet.position('room')
  await app.comet.publish('room', 'first')
  const { client } = clientOf(t, origin)
  const room = recorder()
  await client.subscribe('room', room.listener, { after: position }).ready
  t.same(room.data, ['first'])
})

t.test('after a cursor whose events the server no longer holds: a gap, then what it holds', async t => {
  const { app, origin } = await serve(t, { historySize: 2 })
  await app.comet.publish('room', 0)
  const position = await app.comet.position('room')
  for (const n of [1, 2, 3]) await app.comet.publish('room', n)
  const order: string[] = []
  const { client } = clientOf(t, origin, { onGap: channels => { order.push(`gap ${channels.join()}`) } })
  await client.subscribe('room', data => { order.push(String(data)) }, { after: position }).ready
  t.same(order, ['gap room', '2', '3'])
})

t.test('after, added to a poll that waits already, with nothing new since: ready at once, then what comes', async t => {
  const { app, origin } = await serve(t)
  const { client, gaps } = clientOf(t, origin)
  await client.subscribe('other', () => {}).ready
  await eventually(() => app.comet.stats().pending === 1)
  const position = await app.comet.position('room')
  const room = recorder()
  // Far below the 40 s a poll waits: a poll from after that waited would fail here.
  await within(client.subscribe('room', room.listener, { after: position }).ready, 3000, 'ready')
  await app.comet.publish('room', 'later')
  await eventually(() => room.data.length === 1)
  t.same(room.data, ['later'])
  t.same(gaps, [])
})

t.test('bad after: a coded TypeError at once', async t => {
  const { origin } = await serve(t)
  const { client } = clientOf(t, origin)
  for (const after of ['', '0', 'all', 'a b', 'x'.repeat(65), 42]) {
    t.throws(() => client.subscribe('room', () => {}, { after: after as string }), { name: 'TypeError', code: 'FST_COMET_INVALID_CURSOR', message: /after must be a cursor the server gave/ }, JSON.stringify(after))
  }
  t.throws(() => client.subscribe('room', () => {}, { after: 'a.b.c', history: true }), { name: 'TypeError', message: /history or after, not both/ })
  client.subscribe('room', () => {})
  t.throws(() => client.subscribe('room', () => {}, { after: 'a.b.c' }), { name: 'TypeError', code: 'FST_COMET_CLIENT_SUBSCRIBED', message: /"room" is subscribed already in this client/ })
  t.equal(client.state, 'connecting', 'only the plain subscribe was made')
})
