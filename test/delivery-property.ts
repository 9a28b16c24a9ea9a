// The delivery guarantee as a property, over real sockets: a client that always sends back `p`
// receives every event exactly once and in order per channel, across timeouts, channels that did
// not change, hang-ups and reconnects, as long as the history holds the events. Written once and
// run by test/property.test.ts on one server with the memory engine, and by
// test/redis-property.test.ts on two servers sharing one Redis, where each poll and each publish
// goes to either server.
//
// fast-check generates a scenario (a few channels, a few clients each subscribed to some of them,
// and an interleaving of publishes, polls, hang-ups, reconnects and short waits) and plays it
// against a fresh server. Polls run concurrently with everything that follows them, and some
// clients poll again as soon as a reply comes. A publish action publishes on one or several
// channels at once and is awaited, so that each channel has one definite published order. At the
// end every client catches up, and what each received on each channel must be what was published
// there: nothing lost, nothing twice, nothing out of order, and never a gap.
//
// Some clients stream (Server-Sent Events) instead of polling, and some move between the two at
// each start: a stream client keeps the cursors of the last message id it received and reconnects
// with them as Last-Event-ID, on the URL it first used, as an EventSource does; its hang-ups and
// reconnects close the stream at any point, and it catches up by polls at the end.
//
// Some clients are pages rendered on the server: they start when a 'render' action comes, from
// the position server code read (fastify.comet.position) or after the events it rendered from
// fastify.comet.history, and must then receive exactly what was published after the render.
//
// In some runs the servers track presence (PRESENCE_OPTIONS): each client polls as one of two
// members (so that two clients may share an identity), and pages take snapshots of the members of
// the first channel short enough to have joins and leaves, at the start and at random moments, and follow its joins and leaves from the
// snapshot's cursor. Once every member has left, each page's list, rebuilt from the events, must
// equal the snapshot (empty), each member having joined and left in turn, never twice in a row.
import { strict as assert } from 'node:assert'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import fc from 'fast-check'
import type { Test } from 'tap'
import type { CometOptions } from '../plugin.js'
import { eventually, poll, publish, sleep, within as settleWithin, type PollReply } from './helpers.js'
import { openStream, type OpenedStream } from './sse-client.js'
import { MemberList } from './presence-helpers.js'

/** One try of 50 ms: polls time out often, so timeouts interleave with everything else. */
export const TRIES = 1
export const SLEEP = 0.05
/** More than a run can publish on one channel: the history always holds every event. */
export const HISTORY_SIZE = 1000
const MAX_ACTIONS = 30
/** What makeServers adds to the plugin's options in a run with presence. */
export const PRESENCE_OPTIONS = {
  presence: (request: FastifyRequest) => ({ id: String(request.headers['x-member']) }),
  presenceEvents: true,
  presenceGrace: 0.1
} satisfies CometOptions
/** No reply of this test should take longer than a poll timeout; this bounds a hung one. */
const HANG_MS = 5000

// --- Scenarios ----------------------------------------------------------------------------------

// Awkward but valid names: prototype keys, every punctuation character allowed, the longest name.
// "." and ".." are valid too, but no WHATWG URL client can put them in a publish path (they are
// dot segments, even percent-encoded), so they are not generated.
const awkwardNames = ['__proto__', 'a.b:c@d-e_f', 'constructor', 'hasOwnProperty', '0', '-', '@:', 'x'.repeat(128)]
const channelName = fc.oneof(
  fc.constantFrom(...awkwardNames),
  fc.stringMatching(/^[A-Za-z0-9_.:@-]{1,128}$/).filter(name => name !== '.' && name !== '..')
)

// `server` picks one of the servers of the run (modulo their number).
type Action =
  /** One event on each of these channels, all at once. */
  | { do: 'publish', channels: string[], via: 'http' | 'server', server: number }
  /** Starts a poll from the client's cursors, unless one is outstanding. */
  | { do: 'poll', client: number, server: number }
  /** Aborts the outstanding poll, if any: its reply is never seen, and the cursors stay. */
  | { do: 'hangUp', client: number }
  /** Hangs up and polls again at once, while the server may still hold the old poll. */
  | { do: 'reconnect', client: number, server: number }
  | { do: 'wait', ms: number }
  /** Renders a page for a client that starts from a render: reads its channels' positions or history on a server. */
  | { do: 'render', client: number, server: number, via: 'position' | 'history' }
  /** With presence: a page reads the first channel's members and follows their joins and leaves. */
  | { do: 'snapshot', server: number }

interface ClientPlan {
  channels: string[]
  /**
   * "0": a first poll before anything is published; "all": from everything held, at any time;
   * "render": nothing until a 'render' action (or the end) renders its page, then from there.
   */
  from: '0' | 'all' | 'render'
  /** Polls again as soon as a reply comes, as a browser client does; else only when told to. */
  loops: boolean
  /** How the client subscribes: long-polls, a stream, or each in turn. */
  transport: 'poll' | 'stream' | 'mixed'
  /** The member it polls as, when the servers track presence. */
  member: string
}

interface Scenario {
  channels: string[]
  clients: ClientPlan[]
  /** Small batches, and a small maxReplyBytes, make clients catch up over several replies. */
  limits: ServerLimits
  presence: boolean
  actions: Action[]
}

/** The plugin's limits on one reply, for the servers of a run. */
export interface ServerLimits {
  batchSize: number
  maxReplyBytes: number
}

/**
 * Text of 1 to 4 bytes per character (é, €, and 𝄞, which is two UTF-16 units) in the events, so
 * that the byte bound of a reply is checked against what UTF-8 makes of them.
 */
const eventText = (n: number): string => (['', 'é', '€', '𝄞'][n % 4] as string).repeat(n % 7 * 10)

// Channels and clients are drawn as small indices and resolved modulo the counts, so that every
// part of a scenario shrinks independently and a counterexample reads with names.
const rawAction = fc.oneof(
  { weight: 3, arbitrary: fc.record({ do: fc.constant('publish'), channels: fc.uniqueArray(fc.nat(2), { minLength: 1, maxLength: 3 }), via: fc.constantFrom('http', 'server'), server: fc.nat(1) }) },
  { weight: 3, arbitrary: fc.record({ do: fc.constant('poll'), client: fc.nat(2), server: fc.nat(1) }) },
  { weight: 1, arbitrary: fc.record({ do: fc.constant('hangUp'), client: fc.nat(2) }) },
  { weight: 1, arbitrary: fc.record({ do: fc.constant('reconnect'), client: fc.nat(2), server: fc.nat(1) }) },
  { weight: 2, arbitrary: fc.record({ do: fc.constant('wait'), ms: fc.constantFrom(0, 2, 10, 30, 60) }) },
  { weight: 1, arbitrary: fc.record({ do: fc.constant('render'), client: fc.nat(2), server: fc.nat(1), via: fc.constantFrom('position', 'history') }) },
  { weight: 1, arbitrary: fc.record({ do: fc.constant('snapshot'), server: fc.nat(1) }) }
)

const scenarios: fc.Arbitrary<Scenario> = fc.record({
  channels: fc.uniqueArray(channelName, { minLength: 1, maxLength: 3 }),
  clients: fc.array(fc.record({ picks: fc.uniqueArray(fc.nat(2), { minLength: 1, maxLength: 3 }), from: fc.constantFrom('0', 'all', 'render'), loops: fc.boolean(), member: fc.constantFrom('m0', 'm1'), transport: fc.constantFrom('poll', 'stream', 'mixed') }), { minLength: 1, maxLength: 3 }),
  batchSize: fc.constantFrom(100, 2, 1),
  presence: fc.boolean(),
  // About one to three events in a reply, with their names and text.
  maxReplyBytes: fc.constantFrom(1024 * 1024, 500),
  actions: fc.array(rawAction, { maxLength: MAX_ACTIONS, size: 'max' })
}).map(raw => {
  const channel = (i: number): string => raw.channels[i % raw.channels.length] as string
  const client = (i: number): number => i % raw.clients.length
  return {
    channels: raw.channels,
    clients: raw.clients.map(c => ({ channels: [...new Set(c.picks.map(channel))], from: c.from, loops: c.loops, member: c.member, transport: c.transport })),
    limits: { batchSize: raw.batchSize, maxReplyBytes: raw.maxReplyBytes },
    presence: raw.presence,
    actions: raw.actions.map((a): Action => {
      switch (a.do) {
        case 'publish': return { do: 'publish', channels: [...new Set(a.channels.map(channel))], via: a.via, server: a.server }
        case 'wait': return { do: 'wait', ms: a.ms }
        case 'snapshot': return { do: 'snapshot', server: a.server }
        case 'hangUp': return { do: a.do, client: client(a.client) }
        case 'render': return { do: a.do, client: client(a.client), server: a.server, via: a.via }
        default: return { do: a.do, client: client(a.client), server: a.server }
      }
    })
  }
})

// --- The model: what a client has seen -----------------------------------------------------------

interface Outstanding {
  readonly controller: AbortController
  /** For a stream, once it is open. */
  stream?: OpenedStream
}

class Client {
  readonly name: string
  readonly channels: readonly string[]
  /** What the client sends next: its start, then always the `p` of the last reply it received. */
  readonly cursors: Map<string, string>
  /** Per channel, the data of every event the client received, in the order received. */
  readonly received = new Map<string, unknown[]>()
  /** Every `gap` ever reported to the client. */
  readonly gaps: string[] = []
  /** Protocol violations and failed requests; the run fails on any. */
  readonly problems: string[] = []
  outstanding: Outstanding | undefined
  /** Whether a reply starts the next poll; set while the actions play, for clients that loop. */
  looping = false
  /** False for a page not rendered yet: it has no cursors, and does not poll. */
  rendered: boolean
  /** Per channel, how many of its events were published before the page was rendered with its position. */
  readonly renderedAfter = new Map<string, number>()
  readonly #origins: readonly string[]
  readonly #maxReplyBytes: number
  readonly #inFlight: Array<Promise<unknown>>
  readonly #plan: ClientPlan
  #starts = 0
  readonly #headers: Record<string, string>
  /** Settles when the outstanding poll, if any, has been received or failed. */
  #settled: Promise<void> = Promise.resolve()

  constructor (name: string, plan: ClientPlan, origins: readonly string[], inFlight: Array<Promise<unknown>>, maxReplyBytes: number) {
    this.name = name
    this.#maxReplyBytes = maxReplyBytes
    this.channels = plan.channels
    this.cursors = new Map(plan.channels.map(channel => [channel, plan.from]))
    this.rendered = plan.from !== 'render'
    for (const channel of plan.channels) this.received.set(channel, [])
    this.#plan = plan
    this.#origins = origins
    this.#inFlight = inFlight
    this.#headers = { 'x-member': plan.member }
  }

  /** Starts a poll from the saved cursors; its reply counts only if the client does not hang up first. */
  startPoll (server = 0): void {
    if (this.outstanding !== undefined || !this.rendered) return
    const current: Outstanding = { controller: new AbortController() }
    this.outstanding = current
    const { transport } = this.#plan
    if (transport === 'stream' || (transport === 'mixed' && this.#starts++ % 2 === 0)) {
      this.#startStream(current, server)
      return
    }
    const request = poll(this.#origin(server), Object.fromEntries(this.cursors), { signal: current.controller.signal, headers: this.#headers })
    this.#settled = request.then(
      reply => {
        // A reply that completes after the hang-up (even one already on its way) is not seen.
        if (this.outstanding !== current) return
        this.outstanding = undefined
        this.receive(reply.status, reply.body)
        // A looping client comes back to the other server, as a load balancer may send it.
        if (this.looping && reply.status === 200) this.startPoll(server + 1)
      },
      (error: unknown) => {
        if (this.outstanding !== current) return
        this.outstanding = undefined
        this.problems.push(`${this.name}: poll failed: ${String(error)}`)
      }
    )
    this.#inFlight.push(this.#settled)
  }

  // A stream from the URL the client began with, resumed with its cursors as Last-Event-ID. It
  // stays open until the client hangs up; a stream the server ends counts as a hang-up.
  #startStream (current: Outstanding, server: number): void {
    const lastEventId = [...this.cursors].map(([channel, cursor]) => `${channel}=${cursor}`).join(',')
    const url = Object.fromEntries(this.channels.map(channel => [channel, this.#plan.from === 'render' ? '0' : this.#plan.from]))
    const opened = openStream(this.#origin(server), url, { lastEventId, headers: this.#headers }).then(stream => {
      if (this.outstanding !== current) {
        stream.close()
        return
      }
      current.stream = stream
      if (stream.status !== 200) {
        this.outstanding = undefined
        this.problems.push(`${this.name}: stream answered ${stream.status}`)
        return
      }
      let seen = 0
      const receive = (): void => {
        // Only what came before the hang-up counts, message by message.
        if (this.outstanding !== current) return
        const { messages } = stream.parser
        for (; seen < messages.length; seen++) this.#receiveMessage(messages[seen] as OpenedStream['parser']['messages'][number])
      }
      stream.response.on('data', receive)
      receive()
      stream.ended.then(() => { if (this.outstanding === current) this.outstanding = undefined }, () => {})
      // Settled once the stream's first message, its cursors, is in.
      return stream.until(parser => parser.messages.length > 0, HANG_MS).then(receive, () => {})
    }, (error: unknown) => {
      if (this.outstanding !== current) return
      this.outstanding = undefined
      this.problems.push(`${this.name}: stream failed: ${String(error)}`)
    })
    this.#settled = opened
    this.#inFlight.push(opened)
  }

  #receiveMessage (message: OpenedStream['parser']['messages'][number]): void {
    const problem = (what: string): void => { this.problems.push(`${this.name}: ${what} in ${JSON.stringify(message)}`) }
    const cursors = new Map((message.id ?? '').split(',').map(pair => pair.split('=') as [string, string]))
    if (!isDeepEqual([...cursors.keys()].sort(), [...this.channels].sort())) problem('the id does not name exactly the subscribed channels')
    if (message.event === 'gap') {
      this.gaps.push(...(JSON.parse(message.data) as { channels: string[] }).channels)
    } else if (message.data !== '') {
      const event = JSON.parse(message.data) as { channel: string, id: string, data: unknown }
      const held = this.received.get(event.channel)
      if (held === undefined) problem('an event of another channel')
      else held.push(event.data)
      if (cursors.get(event.channel) !== event.id) problem('the id does not carry the event\'s cursor')
    }
    for (const [channel, cursor] of cursors) if (this.cursors.has(channel)) this.cursors.set(channel, cursor)
  }

  /**
   * Renders the page on a server: with the position of each channel, read before anything else
   * (as before a database query), or with the events its history holds. `published` is what each
   * channel has had so far: publishes are awaited, so none is under way.
   */
  async render (app: FastifyInstance, via: 'position' | 'history', published: ReadonlyMap<string, readonly unknown[]>): Promise<void> {
    if (this.rendered) return
    this.rendered = true
    for (const channel of this.channels) {
      if (via === 'position') {
        this.renderedAfter.set(channel, published.get(channel)?.length ?? 0)
        this.cursors.set(channel, await app.comet.position(channel))
        continue
      }
      // HISTORY_SIZE holds every event of a run: one read takes them all.
      const history = await app.comet.history(channel, { limit: HISTORY_SIZE })
      if (history.gap) this.gaps.push(channel)
      this.received.get(channel)?.push(...history.events.map(event => event.data))
      this.cursors.set(channel, history.next)
    }
  }

  hangUp (): void {
    const current = this.outstanding
    if (current === undefined) return
    this.outstanding = undefined
    current.controller.abort()
    current.stream?.close()
  }

  /** Waits for the outstanding poll, which answers within the poll timeout. */
  async settle (): Promise<void> {
    await within(this.#settled, `${this.name}'s outstanding poll`)
  }

  /** Polls until a reply has nothing: then every event published so far has been received. */
  async drain (): Promise<void> {
    // Each reply with news brings at least one event, and a run publishes at most 3 × MAX_ACTIONS.
    for (let polls = 0; polls <= 3 * MAX_ACTIONS + 1; polls++) {
      const reply = await within(poll(this.#origin(polls), Object.fromEntries(this.cursors), { headers: this.#headers }), `a drain poll of ${this.name}`)
      this.receive(reply.status, reply.body)
      if (reply.status !== 200 || (reply.body.s === 0 && reply.body.m === undefined)) return
    }
    this.problems.push(`${this.name}: drain did not end`)
  }

  #origin (server: number): string {
    return this.#origins[server % this.#origins.length] as string
  }

  /** A reply the client sees: keep its events, send its `p` next time. */
  receive (status: number, body: PollReply): void {
    if (status !== 200) {
      this.problems.push(`${this.name}: poll answered ${status} ${JSON.stringify(body)}`)
      return
    }
    const problem = (what: string): void => { this.problems.push(`${this.name}: ${what} in ${JSON.stringify(body)}`) }
    const subscribed = [...this.channels].sort()
    if (!isDeepEqual(Object.keys(body.p).sort(), subscribed)) problem('"p" does not name exactly the subscribed channels')
    const events = Object.entries(body.m ?? {})
    if ((body.s === 1) !== (events.length > 0 || body.gap !== undefined)) problem('"s" disagrees with "m" and "gap"')
    for (const [channel, list] of events) {
      const held = this.received.get(channel)
      if (held === undefined || list.length === 0) {
        problem(`events for ${JSON.stringify(channel)}`)
        continue
      }
      if (body.k?.[channel] !== list[list.length - 1]?.id) problem(`"k" of ${JSON.stringify(channel)} is not its last event`)
      held.push(...list.map(event => event.data))
    }
    // The events as sent, in UTF-8: within the bound, unless one event alone is larger.
    const eventBytes = events.reduce((sum, [, list]) => sum + Buffer.byteLength(list.map(event => JSON.stringify(event)).join(',')), 0)
    if (events.flatMap(([, list]) => list).length > 1 && eventBytes > this.#maxReplyBytes) problem(`${eventBytes} bytes of events, over maxReplyBytes (${this.#maxReplyBytes})`)
    this.gaps.push(...body.gap ?? [])
    for (const [channel, cursor] of Object.entries(body.p)) {
      if (this.cursors.has(channel)) this.cursors.set(channel, cursor)
    }
  }
}

// --- Playing a scenario ---------------------------------------------------------------------------

/** The servers of one run, with the plugin registered with the run's limits, all sharing their channels. */
export interface RunServers {
  apps: readonly FastifyInstance[]
  origins: readonly string[]
  close (): Promise<void>
}

async function play (scenario: Scenario, makeServers: (limits: ServerLimits, presence: boolean) => Promise<RunServers>): Promise<void> {
  const { apps, origins, close } = await makeServers(scenario.limits, scenario.presence)
  const app = (server: number): FastifyInstance => apps[server % apps.length] as FastifyInstance
  const inFlight: Array<Promise<unknown>> = []
  const clients = scenario.clients.map((plan, i) => new Client(`client ${i}`, plan, origins, inFlight, scenario.limits.maxReplyBytes))
  /** Per channel, the data of every event published on it, in order. */
  const published = new Map<string, unknown[]>(scenario.channels.map(channel => [channel, []]))
  let count = 0
  // The first channel with a <channel>@presence: at most 119 characters.
  const watched = scenario.channels.find(channel => channel.length <= 119)
  const withPresence = scenario.presence && watched !== undefined
  const pages: MemberList[] = []
  const takeSnapshot = async (server: number, channel = watched as string): Promise<void> => { pages.push(new MemberList(channel, await app(server).comet.presence(channel), { strict: true })) }

  try {
    if (withPresence) await takeSnapshot(0)
    // "0" means "from now": those clients poll once before anything is published, so that their
    // start is well defined, and wait for the timeout's reply with their first real cursors.
    const fromNow = clients.filter((_, i) => scenario.clients[i]?.from === '0')
    for (const client of fromNow) client.startPoll()
    await Promise.all(fromNow.map(client => client.settle()))
    clients.forEach((client, i) => { client.looping = client.rendered && scenario.clients[i]?.loops === true })

    for (const action of scenario.actions) {
      switch (action.do) {
        case 'publish': {
          const events = action.channels.map(channel => ({ channel, data: { n: ++count, on: channel, text: eventText(count) } }))
          await Promise.all(events.map(async ({ channel, data }) => {
            if (action.via === 'server') return app(action.server).comet.publish(channel, data)
            const reply = await publish(origins[action.server % origins.length] as string, channel, data)
            assert.equal(reply.status, 200, `publish on ${channel}: ${JSON.stringify(reply.body)}`)
          }))
          for (const { channel, data } of events) published.get(channel)?.push(data)
          break
        }
        case 'poll': clients[action.client]?.startPoll(action.server); break
        case 'hangUp': clients[action.client]?.hangUp(); break
        case 'reconnect':
          clients[action.client]?.hangUp()
          clients[action.client]?.startPoll(action.server)
          break
        case 'wait': await sleep(action.ms); break
        case 'render': {
          const client = clients[action.client] as Client
          if (client.rendered) break
          await client.render(app(action.server), action.via, published)
          client.looping = scenario.clients[action.client]?.loops === true
          break
        }
        case 'snapshot': if (withPresence) await takeSnapshot(action.server); break
      }
    }

    // Let the outstanding polls answer, render the pages still to render, close the streams, then
    // catch every client up.
    for (const client of clients) client.looping = false
    for (const client of clients) await client.render(app(0), 'position', published)
    await Promise.all(clients.map(client => client.settle()))
    for (const client of clients) if (client.outstanding?.stream !== undefined) client.hangUp()
    await Promise.all(clients.map(client => client.drain()))
    await within(Promise.allSettled(inFlight), 'the aborted polls')

    // The guarantee, for every client and each of its channels.
    const expected = clients.map(client => ({
      client: client.name,
      problems: [],
      gaps: [],
      received: client.channels.map(channel => [channel, published.get(channel)?.slice(client.renderedAfter.get(channel) ?? 0)])
    }))
    const observed = clients.map(client => ({
      client: client.name,
      problems: client.problems,
      gaps: client.gaps,
      received: client.channels.map(channel => [channel, client.received.get(channel)])
    }))
    assert.deepEqual(observed, expected, 'every client receives the events of its channels exactly once and in order, and never a gap')
    assert.equal(apps.reduce((sum, app) => sum + app.comet.stats().published, 0), count)
    // Every client is done: no poll may stay behind, not even those of the clients that hung up.
    await eventually(() => apps.every(app => app.comet.stats().pending === 0 && app.comet.stats().streams.open === 0), HANG_MS)

    if (withPresence) {
      // Quiet: once the grace period has passed, every member has left.
      await eventually(async () => (await Promise.all(apps.map(async app => (await app.comet.presence(watched)).count))).every(n => n === 0), HANG_MS)
      const final = await app(1).comet.presence(watched)
      for (const [i, page] of pages.entries()) await within(page.catchUp(origins[i % origins.length] as string), 'a page catching up')
      assert.deepEqual(
        pages.map(page => ({ problems: page.problems, gaps: page.gaps, members: [...page.members.keys()] })),
        pages.map(() => ({ problems: [], gaps: 0, members: final.members.map(m => m.id) })),
        'each page rebuilds the member list of the snapshot from the joins and leaves after its own snapshot'
      )
      const members = new Set(scenario.clients.filter(c => c.channels.includes(watched)).map(c => c.member))
      const joined = new Set(pages[0]?.events.filter(e => e.type === 'join').map(e => e.id))
      assert.deepEqual([...joined].sort(), [...members].sort(), 'the page there from the start saw every member join: each client polls the channel at least to drain')
    }
  } finally {
    for (const client of clients) client.hangUp()
    await within(Promise.allSettled(inFlight), 'the last polls').catch(() => {})
    // Every client is done by now; one set of servers per run, not one per run until the file ends.
    await close()
  }
}

/** Rejects when `promise` takes longer than any reply of this test should. */
async function within<T> (promise: Promise<T>, what: string): Promise<T> {
  return await settleWithin(promise, HANG_MS, what)
}

function isDeepEqual (a: unknown, b: unknown): boolean {
  try {
    assert.deepEqual(a, b)
    return true
  } catch {
    return false
  }
}

/**
 * Checks the property over `numRuns` scenarios, each on fresh servers from `makeServers`, or as
 * many as `timeLimitMs` allows: a budget well inside tap's timeout. The test says how many ran.
 */
export function deliveryProperty (t: Test, name: string, makeServers: (limits: ServerLimits, presence: boolean) => Promise<RunServers>, { numRuns, timeLimitMs }: { numRuns: number, timeLimitMs: number }): void {
  t.test(`${name}: every client receives every event exactly once, in order, across timeouts, hang-ups and reconnects, and pages rebuild the member list from joins and leaves`, async t => {
    const { ran, outOfTime } = await checkWithinTime(fc.asyncProperty(scenarios, scenario => play(scenario, makeServers)), { numRuns, timeLimitMs })
    t.pass(`${ran} scenarios${outOfTime ? ` of ${numRuns}: the time limit of ${timeLimitMs / 1000} s was reached` : ''}`)
  })
}

/**
 * Runs `property` `numRuns` times, or until `timeLimitMs` has passed, and throws fast-check's report
 * of a failure. Past the limit, runs (and shrinks of a failure) are skipped, never cut short, so a
 * slow machine runs fewer scenarios and a failure still reports its smallest case so far. fast-check
 * counts skips as failures: the first skip, which only the time limit makes (the property has no
 * preconditions), ends the check at once, and the scenarios that ran pass.
 */
export async function checkWithinTime<T> (property: fc.IAsyncProperty<T>, { numRuns, timeLimitMs }: { numRuns: number, timeLimitMs: number }): Promise<{ ran: number, outOfTime: boolean }> {
  const details = await fc.check(property, { numRuns, skipAllAfterTimeLimit: timeLimitMs, maxSkipsPerRun: 0 })
  const outOfTime = details.numSkips > 0 && details.counterexample === null
  if (details.failed && !outOfTime) throw new Error(fc.defaultReportMessage(details), { cause: details.errorInstance })
  return { ran: details.numRuns, outOfTime }
}
