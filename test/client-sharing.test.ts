// Clients that share one long-poll, as the tabs of a browser do, run in Node.js against a real
// server: a fake lock manager and BroadcastChannel stand in for the browser's, so that a tab can be
// crashed (its locks released, its messages and requests cut off) or frozen (nothing in or out
// until it thaws) at will. The browser itself is tested in browser-tabs.test.ts.
import { mock } from 'node:test'
import Fastify from 'fastify'
import t, { type Test } from 'tap'
import { CometClient, type CometBroadcastChannel, type CometClientOptions, type CometLocks, type CometSharing } from '../lib/client/client.js'
import comet from '../plugin.js'
import { closeServer, eventually, serve, sleep, within } from './helpers.js'

interface LockRequest {
  name: string
  tab: FakeTab
  callback: () => Promise<void>
  resolve: (value: unknown) => void
  reject: (error: unknown) => void
}

/** The browser's side of the tabs: one lock manager and one set of channels for all of them. */
class FakeBrowser {
  readonly held = new Map<string, LockRequest>()
  readonly queued: LockRequest[] = []
  readonly channels = new Set<{ name: string, tab: FakeTab, deliver: (data: unknown) => void }>()

  request (tab: FakeTab, name: string, options: { steal?: boolean, signal?: AbortSignal }, callback: () => Promise<void>): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const request: LockRequest = { name, tab, callback, resolve, reject }
      if (options.steal === true) {
        const holder = this.held.get(name)
        this.held.delete(name)
        holder?.reject(Object.assign(new Error('stolen'), { name: 'AbortError' }))
        this.#grant(request)
        return
      }
      options.signal?.addEventListener('abort', () => {
        const index = this.queued.indexOf(request)
        if (index === -1) return
        this.queued.splice(index, 1)
        reject(Object.assign(new Error('aborted'), { name: 'AbortError' }))
      })
      this.queued.push(request)
      this.#next(name)
    })
  }

  query (): { held: Array<{ name: string }>, pending: Array<{ name: string }> } {
    return { held: [...this.held.keys()].map(name => ({ name })), pending: this.queued.map(({ name }) => ({ name })) }
  }

  /** A crashed tab's locks go; its promises never settle. */
  release (tab: FakeTab): void {
    for (const [name, request] of this.held) {
      if (request.tab === tab) {
        this.held.delete(name)
        this.#next(name)
      }
    }
    for (const request of [...this.queued]) {
      if (request.tab === tab) this.queued.splice(this.queued.indexOf(request), 1)
    }
  }

  #next (name: string): void {
    if (this.held.has(name)) return
    const request = this.queued.find(r => r.name === name)
    if (request === undefined) return
    this.queued.splice(this.queued.indexOf(request), 1)
    this.#grant(request)
  }

  #grant (request: LockRequest): void {
    this.held.set(request.name, request)
    void request.tab.run(() => request.callback()).then(value => {
      if (this.held.get(request.name) === request) {
        this.held.delete(request.name)
        this.#next(request.name)
      }
      request.resolve(value)
    })
  }

  post (from: FakeTab, name: string, data: unknown): void {
    if (from.state !== 'running') return
    for (const channel of this.channels) {
      if (channel.name === name && channel.tab !== from) {
        const copy = structuredClone(data)
        setImmediate(() => { void channel.tab.run(async () => { channel.deliver(copy) }) })
      }
    }
  }
}

/** One tab: its client's sharing primitives and fetch, which the test can crash or freeze. */
class FakeTab {
  state: 'running' | 'frozen' | 'crashed' = 'running'
  readonly browser: FakeBrowser
  readonly #thawed: Array<() => void> = []
  readonly #requests = new Set<AbortController>()

  constructor (browser: FakeBrowser) {
    this.browser = browser
  }

  /** Runs `task` in the tab: later while it is frozen, never once it crashed. */
  async run<T> (task: () => Promise<T>): Promise<T> {
    if (this.state === 'frozen') await new Promise<void>(resolve => this.#thawed.push(resolve))
    if (this.state === 'crashed') return await new Promise<T>(() => {})
    return await task()
  }

  get sharing (): CometSharing {
    const tab = this
    const locks: CometLocks = {
      request: (name, options, callback) => this.browser.request(this, name, options, callback),
      query: async () => this.browser.query()
    }
    class Channel implements CometBroadcastChannel {
      readonly #entry: { name: string, tab: FakeTab, deliver: (data: unknown) => void }
      readonly #listeners: Array<(event: { data: unknown }) => void> = []
      constructor (name: string) {
        this.#entry = { name, tab, deliver: data => { for (const listener of this.#listeners) listener({ data }) } }
        tab.browser.channels.add(this.#entry)
      }

      postMessage (message: unknown): void { tab.browser.post(tab, this.#entry.name, message) }
      addEventListener (_type: 'message', listener: (event: { data: unknown }) => void): void { this.#listeners.push(listener) }
      close (): void { tab.browser.channels.delete(this.#entry) }
    }
    return { locks, BroadcastChannel: Channel }
  }

  readonly fetch: typeof fetch = async (input, init) => {
    return await this.run(async () => {
      const controller = new AbortController()
      this.#requests.add(controller)
      init?.signal?.addEventListener('abort', () => { controller.abort() })
      try {
        const response = await fetch(input, { ...init, signal: controller.signal })
        // A frozen tab reads the answer when it thaws.
        const body = await response.arrayBuffer()
        return await this.run(async () => new Response(body, response))
      } finally {
        this.#requests.delete(controller)
      }
    })
  }

  crash (): void {
    this.state = 'crashed'
    this.browser.release(this)
    for (const controller of this.#requests) controller.abort()
  }

  freeze (): void {
    this.state = 'frozen'
  }

  thaw (): void {
    this.state = 'running'
    for (const resolve of this.#thawed.splice(0)) resolve()
  }
}

interface Tab {
  tab: FakeTab
  /** The URLs the tab fetched. */
  urls: string[]
  client: CometClient
  errors: Error[]
  gaps: string[][]
}

function openTab (t: Test, browser: FakeBrowser, origin: string, options: CometClientOptions = {}): Tab {
  const tab = new FakeTab(browser)
  const errors: Error[] = []
  const gaps: string[][] = []
  const urls: string[] = []
  const client = new CometClient({
    url: `${origin}/comet`,
    share: tab.sharing,
    fetch: async (input, init) => {
      urls.push(decodeURIComponent(String(input)))
      return await tab.fetch(input, init)
    },
    retry: { initialDelay: 20, maxDelay: 100 },
    onError: error => { errors.push(error) },
    onGap: channels => { gaps.push(channels) },
    ...options
  })
  t.teardown(() => {
    tab.thaw()
    client.close()
  })
  return { tab, client, urls, errors, gaps }
}

/** Data received, per tab. */
function listen (client: CometClient, channel: string, options = {}): { data: unknown[], ready: Promise<void> } {
  const data: unknown[] = []
  const { ready } = client.subscribe(channel, value => { data.push(value) }, options)
  return { data, ready }
}

/** A server, and a tab that listens to 'room' and has got `events`, published there. */
async function firstTabWith (t: Test, events: unknown[]): Promise<{ app: Awaited<ReturnType<typeof serve>>['app'], origin: string, browser: FakeBrowser, firstRoom: ReturnType<typeof listen> }> {
  const { app, origin } = await serve(t)
  const browser = new FakeBrowser()
  const firstRoom = listen(openTab(t, browser, origin).client, 'room')
  await firstRoom.ready
  for (const data of events) await app.comet.publish('room', data)
  await eventually(() => firstRoom.data.length === events.length)
  return { app, origin, browser, firstRoom }
}

/** Two tabs, both listening to 'room', ready. */
async function twoTabsInRoom (t: Test, origin: string): Promise<{ browser: FakeBrowser, a: Tab, b: Tab, aRoom: ReturnType<typeof listen>, bRoom: ReturnType<typeof listen> }> {
  const browser = new FakeBrowser()
  const [a, b] = [openTab(t, browser, origin), openTab(t, browser, origin)]
  const aRoom = listen(a.client, 'room')
  const bRoom = listen(b.client, 'room')
  await Promise.all([aRoom.ready, bRoom.ready])
  return { browser, a, b, aRoom, bRoom }
}

/** The tabs' channel, for a test that sends what no tab would (forged answers, requests) and listens. */
function forgedChannel (t: Test, browser: FakeBrowser, origin: string): CometBroadcastChannel {
  const channel = new new FakeTab(browser).sharing.BroadcastChannel(`fastify-comet ${origin}/comet/`)
  t.teardown(() => { channel.close() })
  return channel
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i)

t.test('three tabs share one poll; each gets the events of its own channels, once, in order', async t => {
  const { app, origin } = await serve(t)
  const browser = new FakeBrowser()
  const [a, b, c] = [openTab(t, browser, origin), openTab(t, browser, origin), openTab(t, browser, origin)]
  const aRoom = listen(a.client, 'room')
  const bRoom = listen(b.client, 'room')
  const cOther = listen(c.client, 'other')
  await Promise.all([aRoom.ready, bRoom.ready, cOther.ready])
  await eventually(() => app.comet.stats().pending === 1)
  for (const n of range(1, 5)) await app.comet.publish('room', n)
  await app.comet.publish('other', 'o')
  await eventually(() => bRoom.data.length === 5 && cOther.data.length === 1)
  await sleep(30)
  t.same([aRoom.data, bRoom.data, cOther.data], [range(1, 5), range(1, 5), ['o']])
  t.same([a.client.state, b.client.state, c.client.state], ['connected', 'connected', 'connected'])
  t.equal(app.comet.stats().pending, 1, 'one poll for the three')

  // A follower leaves its only channel: the leader's poll drops it.
  c.client.unsubscribe('other')
  await eventually(() => c.client.state === 'idle')
  await app.comet.publish('other', 'after leaving')
  await app.comet.publish('room', 6)
  await eventually(() => aRoom.data.length === 6)
  t.same(cOther.data, ['o'])

  // The leader leaves a channel a follower still has: the poll keeps it.
  a.client.unsubscribe('room')
  await app.comet.publish('room', 7)
  await eventually(() => bRoom.data.length === 7)
  t.same([aRoom.data, bRoom.data], [range(1, 6), range(1, 7)])

  // A tab joining a channel polled already, without history, gets what comes next only.
  const d = openTab(t, browser, origin)
  const dRoom = listen(d.client, 'room')
  await dRoom.ready
  await app.comet.publish('room', 8)
  await eventually(() => dRoom.data.length === 1 && bRoom.data.length === 8)
  t.same(dRoom.data, [8])
})

t.test('a tab joining a channel the others poll already gets its history, then what comes next, once each', async t => {
  const { app, origin, browser, firstRoom } = await firstTabWith(t, range(1, 3))

  const late = openTab(t, browser, origin)
  const lateRoom = listen(late.client, 'room', { history: true })
  // Published while the late tab reads the history: it comes by both ways, and is shown once.
  const publishing = (async () => { for (const n of range(4, 8)) await app.comet.publish('room', n) })()
  await lateRoom.ready
  await publishing
  await eventually(() => lateRoom.data.length >= 8 && firstRoom.data.length >= 8)
  await sleep(50)
  t.same(lateRoom.data, range(1, 8))
  t.same(firstRoom.data, range(1, 8))
  const again = listen(late.client, 'room', { history: true })
  await again.ready
  t.same(again.data, [], 'a second listener of a ready channel gets no history')
})

t.test('a tab that cannot read the history is told with onGap, and follows the channel from then on', async t => {
  const { app, origin, browser } = await firstTabWith(t, ['held'])
  let historyRequests = 0
  const late = openTab(t, browser, origin, {
    fetch: async (input, init) => {
      if (!String(input).includes('=all')) return await fetch(input, init)
      // An error answer, then no answer at all.
      if (historyRequests++ === 0) return Response.json({ statusCode: 503, code: 'X', message: 'busy' }, { status: 503 })
      throw new TypeError('fetch failed')
    }
  })
  const lateRoom = listen(late.client, 'room', { history: true })
  await lateRoom.ready
  t.same(late.gaps, [['room']])
  t.equal(late.errors.length, 3, 'three tries')
  t.match(late.errors, [{ statusCode: 503 }, { name: 'TypeError' }, { name: 'TypeError' }])
  await app.comet.publish('room', 'next')
  await eventually(() => lateRoom.data.length === 1)
  t.same(lateRoom.data, ['next'])
})

t.test('a tab that leaves a channel while it reads the history delivers nothing of it', async t => {
  const { origin, browser } = await firstTabWith(t, ['held'])
  let leave = (): void => {}
  const late = openTab(t, browser, origin, {
    fetch: async (input, init) => {
      if (String(input).includes('=all')) leave()
      return await fetch(input, init)
    }
  })
  const lateRoom = listen(late.client, 'room', { history: true })
  leave = () => { late.client.unsubscribe('room') }
  await t.rejects(lateRoom.ready, { code: 'FST_COMET_CLIENT_UNSUBSCRIBED' })
  await sleep(50)
  t.same(lateRoom.data, [])
})

t.test('a thousand events and more in a row reach every tab, once each, in order', async t => {
  const { app, origin } = await serve(t, { historySize: 2000 })
  const { browser, a, b, aRoom, bRoom } = await twoTabsInRoom(t, origin)
  const sent = range(1, 1200)
  for (const n of sent) await app.comet.publish('room', n)
  await eventually(() => aRoom.data.length >= 1200 && bRoom.data.length >= 1200, 10_000)
  t.same(aRoom.data, sent)
  t.same(bRoom.data, sent)
})

t.test('two tabs asking for history before the first answer both get it, from the one poll', async t => {
  const { app, origin } = await serve(t)
  await app.comet.publish('room', 'held')
  const browser = new FakeBrowser()
  const a = openTab(t, browser, origin)
  const b = openTab(t, browser, origin)
  const aRoom = listen(a.client, 'room')
  const bRoom = listen(b.client, 'room', { history: true })
  await Promise.all([aRoom.ready, bRoom.ready])
  t.same(bRoom.data, ['held'])
})

async function publishWhile (app: { comet: { publish: (channel: string, data: unknown) => Promise<unknown> } }, count: number, during: Record<number, () => void>): Promise<number[]> {
  for (const n of range(1, count)) {
    await app.comet.publish('room', n)
    during[n]?.()
    await sleep(5)
  }
  return range(1, count)
}

t.test('the leader crashes while events flow: the others take over from the cursors they had, losing and repeating nothing', async t => {
  const { app, origin } = await serve(t)
  const browser = new FakeBrowser()
  const tabs = [openTab(t, browser, origin), openTab(t, browser, origin), openTab(t, browser, origin)]
  const rooms = tabs.map(({ client }) => listen(client, 'room'))
  const only = listen((tabs[2] as Tab).client, 'only')
  const second = listen((tabs[1] as Tab).client, 'second')
  await Promise.all([...rooms, only, second].map(({ ready }) => ready))
  await eventually(() => app.comet.stats().pending === 1)
  const sent = await publishWhile(app, 40, { 15: () => { (tabs[0] as Tab).tab.crash() } })
  await app.comet.publish('only', 'o')
  await eventually(() => rooms[1]?.data.length === 40 && rooms[2]?.data.length === 40 && only.data.length === 1, 5000)
  await sleep(50)
  t.same(rooms[1]?.data, sent)
  t.same(rooms[2]?.data, sent)
  await eventually(() => app.comet.stats().pending === 1)
})

t.test('the leader closes: the next tab leads at once from the last cursors', async t => {
  const { app, origin } = await serve(t)
  const { browser, a, b, aRoom, bRoom } = await twoTabsInRoom(t, origin)
  const sent = await publishWhile(app, 20, { 8: () => { a.client.close() } })
  await eventually(() => bRoom.data.length === 20)
  await sleep(30)
  t.same(bRoom.data, sent)
  t.same(aRoom.data, range(1, aRoom.data.length), 'the closed tab got a part, in order')
  t.ok(aRoom.data.length <= 8)
  t.equal(b.client.state, 'connected')
})

t.test('a frozen leader is found out by its silence and replaced; thawed, it follows and repeats nothing', async t => {
  const { app, origin } = await serve(t)
  const browser = new FakeBrowser()
  const tabs = [openTab(t, browser, origin), openTab(t, browser, origin), openTab(t, browser, origin)]
  const rooms = tabs.map(({ client }) => listen(client, 'room'))
  await Promise.all(rooms.map(({ ready }) => ready))
  await eventually(() => app.comet.stats().pending === 1)
  await app.comet.publish('room', 1)
  await eventually(() => rooms.every(({ data }) => data.length === 1))
  ;(tabs[0] as Tab).tab.freeze()
  await app.comet.publish('room', 2)
  await app.comet.publish('room', 3)
  // The frozen tab's poll was answered, but it cannot pass the answer on: the others steal the lead.
  await eventually(() => rooms[1]?.data.length === 3 && rooms[2]?.data.length === 3, 15_000)
  ;(tabs[0] as Tab).tab.thaw()
  await app.comet.publish('room', 4)
  await eventually(() => rooms.every(({ data }) => data.length >= 4), 5000)
  await sleep(100)
  for (const room of rooms) t.same(room.data, [1, 2, 3, 4])
  await eventually(() => app.comet.stats().pending === 1, 5000)
})

t.test('a crashed tab\'s channels leave the poll once its lock is gone', async t => {
  const { origin } = await serve(t)
  const browser = new FakeBrowser()
  const leader = openTab(t, browser, origin)
  await listen(leader.client, 'room').ready
  const doomed = openTab(t, browser, origin)
  await listen(doomed.client, 'lonely').ready
  await eventually(() => leader.urls.at(-1)?.includes('lonely') === true)
  doomed.tab.crash()
  // A beat finds its lock gone (once the time a new tab has to take its lock has passed), and the
  // poll is made again without its channel.
  await eventually(() => leader.urls.at(-1)?.includes('lonely') === false, 6000)
  t.match(leader.urls.at(-1), /room/)
})

t.test('a poll failure reaches every tab\'s onError, and a restart\'s gap every tab\'s onGap', async t => {
  const first = await serve(t)
  const port = Number(new URL(first.origin).port)
  const browser = new FakeBrowser()
  const [a, b] = [openTab(t, browser, first.origin), openTab(t, browser, first.origin)]
  const bRoom = listen(b.client, 'room')
  await Promise.all([listen(a.client, 'room').ready, bRoom.ready])
  await closeServer(first.app)
  await eventually(() => b.client.state === 'reconnecting')
  t.ok(b.errors.length > 0 && a.errors.length > 0, 'both tabs hear of the failure')
  t.match(b.errors[0], { message: String(a.errors[0]?.message) })
  const second = Fastify()
  await second.register(comet)
  t.teardown(() => closeServer(second))
  await second.listen({ port, host: '127.0.0.1' })
  await eventually(() => b.client.state === 'connected', 5000)
  t.same([a.gaps, b.gaps], [[['room']], [['room']]])
  await eventually(() => second.comet.stats().pending === 1)
  await second.comet.publish('room', 'after')
  await eventually(() => bRoom.data.length === 1)
})

t.test('an error answer reaches the followers with its code and status', async t => {
  const { origin } = await serve(t, { authorizeSubscribe: () => false })
  const browser = new FakeBrowser()
  const [a, b] = [openTab(t, browser, origin), openTab(t, browser, origin)]
  listen(a.client, 'room')
  listen(b.client, 'room')
  await eventually(() => b.errors.length > 0)
  t.match(b.errors[0], { name: 'CometClientError', code: 'FST_COMET_FORBIDDEN', statusCode: 403 })
  t.equal(b.client.state, 'refused')
})

t.test('a refusal rejects ready in every tab that shares the poll, the leader\'s and the followers\'', async t => {
  const { origin } = await serve(t, { authorizeSubscribe: () => false })
  const browser = new FakeBrowser()
  const [a, b] = [openTab(t, browser, origin), openTab(t, browser, origin)]
  const refused = { code: 'FST_COMET_CLIENT_REFUSED', statusCode: 403, cause: { code: 'FST_COMET_FORBIDDEN' } }
  await t.rejects(listen(a.client, 'room').ready, refused)
  await t.rejects(listen(b.client, 'room').ready, refused)
  t.same([a.client.state, b.client.state], ['refused', 'refused'])
})

t.test('a tab that cannot place an answer (a cursor it never passed) asks the leader to poll from its own cursor', async t => {
  const { app, origin } = await serve(t)
  const { browser, a, b, aRoom, bRoom } = await twoTabsInRoom(t, origin)
  await app.comet.publish('room', 1)
  await eventually(() => bRoom.data.length === 1)

  // A forged answer, as from a leader that polled from a cursor the tabs never had.
  const channel = forgedChannel(t, browser, origin)
  const needs: unknown[] = []
  channel.addEventListener('message', ({ data }) => { if ((data as { t: string }).t === 'need') needs.push(data) })
  channel.postMessage({ t: 'reply', from: 'forger', items: [{ c: 'room', from: 'never.seen.0', m: [{ id: 'x.y.1', data: 'forged' }], p: 'x.y.1', gap: false }] })
  // Requests about channels nobody polls change nothing; a ping gets a beat.
  channel.postMessage({ t: 'need', from: 'forger', c: 'unknown', cursor: 'x.y.0' })
  channel.postMessage({ t: 'leave', from: 'forger', c: 'unknown' })
  const beats: unknown[] = []
  channel.addEventListener('message', ({ data }) => { if ((data as { t: string }).t === 'beat') beats.push(data) })
  channel.postMessage({ t: 'ping', from: 'forger' })
  await eventually(() => beats.length > 0)
  // And a stale first answer, which a tab that has its own already ignores.
  channel.postMessage({ t: 'reply', from: 'forger', items: [{ c: 'room', from: null, m: [{ id: 'x.y.2', data: 'stale' }], p: 'x.y.2', gap: false }] })
  // The follower posts its need; the leader, which cannot place it either, asks its own poll.
  await eventually(() => needs.length >= 1, 6000)
  t.match(needs[0], { t: 'need', c: 'room', cursor: /^[A-Za-z0-9_.~-]+$/ })
  await app.comet.publish('room', 2)
  await eventually(() => aRoom.data.length === 2 && bRoom.data.length === 2)
  await sleep(50)
  t.same([aRoom.data, bRoom.data], [[1, 2], [1, 2]], 'nothing forged, lost or repeated')
})

t.test('an answer passed on twice, and a poll made again from an older cursor, repeat nothing', async t => {
  const { app, origin } = await serve(t)
  const { browser, a, b, aRoom, bRoom } = await twoTabsInRoom(t, origin)
  const channel = forgedChannel(t, browser, origin)
  const replies: Array<{ items: Array<{ c: string, from: string | null, m: unknown[] }> }> = []
  channel.addEventListener('message', ({ data }) => { if ((data as { t: string }).t === 'reply') replies.push(data as typeof replies[number]) })
  for (const n of [1, 2, 3]) {
    await app.comet.publish('room', n)
    await eventually(() => bRoom.data.length === n)
  }
  const withEvents = replies.filter(reply => reply.items.some(item => item.c === 'room' && item.m.length > 0))
  const first = withEvents[0]?.items.find(item => item.c === 'room')
  t.ok(first?.from, 'an answer from a cursor')
  // The same answer again, as a stale leader would pass it on.
  channel.postMessage(withEvents[0])
  // And the leader asked to poll from before the first event: it brings 1, 2 and 3 again.
  channel.postMessage({ t: 'need', from: 'forger', c: 'room', cursor: first?.from })
  await eventually(() => replies.some(reply => reply.items.some(item => item.c === 'room' && item.m.length === 3)))
  await app.comet.publish('room', 4)
  await eventually(() => aRoom.data.length >= 4 && bRoom.data.length >= 4)
  await sleep(50)
  t.same([aRoom.data, bRoom.data], [[1, 2, 3, 4], [1, 2, 3, 4]])
})

t.test('a stale lead message (a tab that led before this leader stole the lock) does not stop the leader', async t => {
  const { app, origin } = await serve(t)
  const { browser, aRoom, bRoom } = await twoTabsInRoom(t, origin)
  const channel = forgedChannel(t, browser, origin)
  const heres: unknown[] = []
  channel.addEventListener('message', ({ data }) => { if ((data as { t: string }).t === 'here') heres.push(data) })
  channel.postMessage({ t: 'lead', from: 'forger' })
  await eventually(() => heres.length === 2)
  t.match(heres, [{ channels: [{ c: 'room' }] }, { channels: [{ c: 'room' }] }], 'every tab tells it its channels')
  await app.comet.publish('room', 1)
  await eventually(() => aRoom.data.length === 1 && bRoom.data.length === 1)
  await eventually(() => app.comet.stats().pending === 1)
  await app.comet.publish('room', 2)
  await eventually(() => aRoom.data.length === 2 && bRoom.data.length === 2)
  t.same([aRoom.data, bRoom.data], [[1, 2], [1, 2]], 'the leader polls on')
})

t.test('a tab closed while the lock it queued for was being granted does not lead', async t => {
  const { app, origin } = await serve(t)
  const { a, b } = await twoTabsInRoom(t, origin)
  // The lock goes to the frozen tab: its grant runs when it thaws, after it was closed.
  b.tab.freeze()
  a.client.close()
  await sleep(20)
  b.client.close()
  b.tab.thaw()
  await sleep(50)
  await eventually(() => app.comet.stats().pending === 0)
  t.equal(b.client.state, 'closed')
})

t.test('answers that come out of order are placed in order', async t => {
  const { app, origin } = await serve(t)
  const browser = new FakeBrowser()
  const a = openTab(t, browser, origin)
  const aRoom = listen(a.client, 'room')
  await aRoom.ready
  const channel = forgedChannel(t, browser, origin)
  let head = ''
  channel.addEventListener('message', ({ data }) => {
    const message = data as { t: string, items?: Array<{ c: string, p: string }> }
    if (message.t === 'reply') head = message.items?.find(item => item.c === 'room')?.p ?? head
  })
  await app.comet.publish('room', 1)
  await eventually(() => aRoom.data.length === 1 && head !== '')
  // Two answers of another leader, the second first.
  channel.postMessage({ t: 'reply', from: 'other', items: [{ c: 'room', from: 'o.o.1', m: [{ id: 'o.o.2', data: 'second' }], p: 'o.o.2', gap: true }] })
  await sleep(20)
  channel.postMessage({ t: 'reply', from: 'other', items: [{ c: 'room', from: head, m: [{ id: 'o.o.1', data: 'first' }], p: 'o.o.1', gap: false }] })
  await eventually(() => aRoom.data.length === 3)
  t.same(aRoom.data, [1, 'first', 'second'])
  t.same(a.gaps, [['room']])
})

t.test('an empty answer from an older cursor, passed on late, does not move a tab\'s cursor back', async t => {
  const { app, origin } = await serve(t)
  const { browser, aRoom, bRoom } = await twoTabsInRoom(t, origin)
  const channel = forgedChannel(t, browser, origin)
  const withEvents: Array<{ from: string | null, p: string }> = []
  const heres: Array<{ channels: Array<{ c: string, cursor: string | undefined }> }> = []
  channel.addEventListener('message', ({ data }) => {
    const message = data as { t: string, items?: Array<{ c: string, from: string | null, m: unknown[], p: string }> }
    const room = message.items?.find(item => item.c === 'room' && item.m.length > 0)
    if (message.t === 'reply' && room !== undefined) withEvents.push(room)
    if (message.t === 'here') heres.push(data as typeof heres[number])
  })
  for (const n of [1, 2]) {
    await app.comet.publish('room', n)
    await eventually(() => aRoom.data.length === n && bRoom.data.length === n && withEvents.length === n)
  }
  const { from: older, p: head } = withEvents[1] as { from: string, p: string }
  // The answer to a poll from the cursor before event 2 that timed out before it came, passed on
  // after the answer that brought it (by a leader that was frozen meanwhile).
  channel.postMessage({ t: 'reply', from: 'stale', items: [{ c: 'room', from: older, m: [], p: older, gap: false }] })
  // A new leader asks every tab for its channels and cursors.
  channel.postMessage({ t: 'lead', from: 'forger' })
  await eventually(() => heres.length === 2)
  t.same(heres.map(here => here.channels.find(({ c }) => c === 'room')?.cursor), [head, head], 'both tabs are still after event 2')
})

t.test('followers honour a live leader\'s beats: in quiet seconds nobody steals the lead', async t => {
  const { app, origin } = await serve(t)
  // node:test's fake clock for the tabs' beats and silences; the server's timers stay real.
  mock.timers.enable({ apis: ['setInterval', 'Date'], now: Date.now() })
  t.teardown(() => { mock.timers.reset() })
  const { browser, aRoom } = await twoTabsInRoom(t, origin)
  const channel = forgedChannel(t, browser, origin)
  const heard: string[] = []
  channel.addEventListener('message', ({ data }) => { heard.push((data as { t: string }).t) })
  for (let second = 1; second <= 8; second++) {
    mock.timers.tick(1000)
    // The beats cross the channel on later turns of the event loop.
    for (let turn = 0; turn < 5; turn++) await new Promise(resolve => setImmediate(resolve))
  }
  t.ok(heard.filter(type => type === 'beat').length >= 8, 'the leader beat every second')
  t.same(heard.filter(type => type === 'lead' || type === 'ping'), [], 'no follower took the lead, nor asked whether the leader lives')
  t.equal(app.comet.stats().pending, 1, 'one poll, the leader\'s')
  await app.comet.publish('room', 'still here')
  for (let turn = 0; turn < 100 && aRoom.data.length === 0; turn++) await new Promise(resolve => setTimeout(resolve, 5))
  t.same(aRoom.data, ['still here'])
})

t.test('share: false, or no primitives (Node.js), gives each client a poll of its own', async t => {
  const { app, origin } = await serve(t)
  const clients = [new CometClient({ url: `${origin}/comet`, share: false }), new CometClient({ url: `${origin}/comet` })]
  t.teardown(() => { for (const client of clients) client.close() })
  await Promise.all(clients.map(client => client.subscribe('room', () => {}).ready))
  await eventually(() => app.comet.stats().pending === 2)
  t.equal(app.comet.stats().pending, 2)
})

/** A server where 'room' had `before` published, then its position read, then `between` published: a page rendered in between. */
async function renderedRoom (t: Test, before: unknown[], between: unknown[]): Promise<{ app: Awaited<ReturnType<typeof serve>>['app'], origin: string, position: string }> {
  const { app, origin } = await serve(t)
  for (const data of before) await app.comet.publish('room', data)
  const position = await app.comet.position('room')
  for (const data of between) await app.comet.publish('room', data)
  return { app, origin, position }
}

t.test('a follower subscribing with after: the leader polls the channel from after, and the follower gets what came since, once', async t => {
  const { app, origin, position } = await renderedRoom(t, ['rendered'], ['between 1', 'between 2'])
  const browser = new FakeBrowser()
  const leader = openTab(t, browser, origin)
  await listen(leader.client, 'other').ready
  const follower = openTab(t, browser, origin)
  const room = listen(follower.client, 'room', { after: position })
  await room.ready
  t.same(room.data, ['between 1', 'between 2'])
  t.ok(leader.urls.some(url => url.includes(`subscribed[room]=${position}`)), 'the leader asked from the position')
  t.same(follower.urls, [], 'the follower made no request of its own')
  await app.comet.publish('room', 'later')
  await eventually(() => room.data.length === 3)
  await sleep(30)
  t.same(room.data, ['between 1', 'between 2', 'later'])
  t.same(follower.gaps, [])
})

t.test('a follower subscribing with after to a channel polled already reads from after on its own, then follows the poll, once each', async t => {
  const { app, origin, position } = await renderedRoom(t, ['rendered'], ['between'])
  const browser = new FakeBrowser()
  const leader = openTab(t, browser, origin)
  const leaderRoom = listen(leader.client, 'room')
  await leaderRoom.ready
  const follower = openTab(t, browser, origin)
  const room = listen(follower.client, 'room', { after: position })
  // Published while the follower reads: it comes by both ways, and is delivered once.
  const publishing = (async () => { for (const n of range(1, 5)) await app.comet.publish('room', n) })()
  await room.ready
  await publishing
  await eventually(() => room.data.length >= 6 && leaderRoom.data.length >= 5)
  await sleep(50)
  t.same(room.data, ['between', ...range(1, 5)])
  t.same(leaderRoom.data, range(1, 5))
  t.ok(follower.urls.some(url => url.includes(`subscribed[room]=${position}`) && url.includes('wait=0')), 'the follower read from its position')
  t.same(follower.gaps, [])
})

t.test('two tabs subscribing one channel after different positions get each what came after its own', async t => {
  const { app, origin, position: older } = await renderedRoom(t, ['rendered'], [1, 2])
  const newer = await app.comet.position('room')
  await app.comet.publish('room', 3)
  const browser = new FakeBrowser()
  const [a, b] = [openTab(t, browser, origin), openTab(t, browser, origin)]
  const aRoom = listen(a.client, 'room', { after: older })
  const bRoom = listen(b.client, 'room', { after: newer })
  await Promise.all([aRoom.ready, bRoom.ready])
  await app.comet.publish('room', 4)
  await eventually(() => aRoom.data.length === 4 && bRoom.data.length === 2)
  await sleep(50)
  t.same(aRoom.data, [1, 2, 3, 4])
  t.same(bRoom.data, [3, 4])
  t.same([a.gaps, b.gaps], [[], []])
})

t.test('a tab subscribing with after while another tab\'s first poll of the channel, from now, is on its way gets what came after its own', async t => {
  const { app, origin, position } = await renderedRoom(t, ['rendered'], ['between'])
  const browser = new FakeBrowser()
  const [a, b] = [openTab(t, browser, origin), openTab(t, browser, origin)]
  const aRoom = listen(a.client, 'room')
  const bRoom = listen(b.client, 'room', { after: position })
  await Promise.all([aRoom.ready, bRoom.ready])
  await app.comet.publish('room', 'later')
  await eventually(() => aRoom.data.length === 1 && bRoom.data.length === 2)
  await sleep(50)
  t.same(aRoom.data, ['later'])
  t.same(bRoom.data, ['between', 'later'])
})

t.test('a tab subscribing after the id of the last event it shows, with nothing newer, while the poll is behind it: none of the older events', async t => {
  const { app, origin, position: older } = await renderedRoom(t, ['rendered'], [1])
  const { id: lastShown } = await app.comet.publish('room', 2)
  const browser = new FakeBrowser()
  const [a, b] = [openTab(t, browser, origin), openTab(t, browser, origin)]
  const aRoom = listen(a.client, 'room', { after: older })
  const bRoom = listen(b.client, 'room', { after: lastShown })
  await Promise.all([aRoom.ready, bRoom.ready])
  await app.comet.publish('room', 3)
  await eventually(() => aRoom.data.length === 3 && bRoom.data.length === 1)
  await sleep(50)
  t.same(aRoom.data, [1, 2, 3])
  t.same(bRoom.data, [3])
})

t.test('a tab subscribing with after to a channel polled already, after events the server no longer holds: a gap, then what it holds', async t => {
  const { app, origin } = await serve(t, { historySize: 2 })
  const browser = new FakeBrowser()
  const leader = openTab(t, browser, origin)
  const leaderRoom = listen(leader.client, 'room')
  await leaderRoom.ready
  const position = await app.comet.position('room')
  for (const n of range(1, 4)) await app.comet.publish('room', n)
  await eventually(() => leaderRoom.data.includes(4))
  const follower = openTab(t, browser, origin)
  const room = listen(follower.client, 'room', { after: position })
  await room.ready
  t.same(follower.gaps, [['room']])
  t.same(room.data, [3, 4])
})

t.test('a follower subscribing after the very cursor the poll waits at is ready at once, and gets what comes', async t => {
  const { app, origin, browser, firstRoom } = await firstTabWith(t, ['shown'])
  await eventually(() => app.comet.stats().pending === 1)
  // Read right after the publish: the newest event's id, where the shared poll waits.
  const position = await app.comet.position('room')
  const follower = openTab(t, browser, origin)
  const room = listen(follower.client, 'room', { after: position })
  // Far below the 40 s a poll waits: a follower waiting for the poll's next answer would fail here.
  await within(room.ready, 3000, 'ready')
  await app.comet.publish('room', 'next')
  await eventually(() => room.data.length === 1 && firstRoom.data.length === 2)
  t.same(room.data, ['next'])
})
