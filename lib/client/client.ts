// The client, for browsers and Node.js: one long-poll at a time for every channel subscribed, with
// the cursors kept here, so that nothing is lost or repeated across timeouts, reconnects and
// changes of channels. It needs only fetch and AbortController. In a browser, the tabs of one
// origin that use the same url share one long-poll: one tab leads (elected with the Web Locks API)
// and polls for every tab's channels; the others get its answers over a BroadcastChannel.
//
// It stays one self-contained module (no imports): the plugin serves this very file, compiled, at
// {prefix}/client.js, so that a page can import it without a build step.

export type CometClientState =
  /** No channel is subscribed: no request is made. */
  | 'idle'
  /** The first poll has not been answered yet. */
  | 'connecting'
  /** The last poll was answered: from the cursors held, nothing can be missed. */
  | 'connected'
  /** The last poll failed; the next one is scheduled with backoff. */
  | 'reconnecting'
  /** close() was called. */
  | 'closed'

/** What a listener learns besides the event's data. */
export interface CometEvent {
  channel: string
  /** The event's cursor: unique on the server that published it, in the order of publishing. */
  id: string
}

export type CometListener = (data: unknown, event: CometEvent) => void

export interface CometRetryOptions {
  /**
   * Milliseconds of the first retry's backoff ceiling; it doubles after each failure in a row.
   * Each wait is a random fraction of the ceiling ("full jitter"), so that clients cut off together
   * do not come back together.
   * @default 500
   */
  initialDelay?: number
  /**
   * Milliseconds the backoff ceiling grows to at most. A 4xx answer (other than 408 and 429) waits
   * this long at once: asking again soon would get the same answer.
   * @default 10000
   */
  maxDelay?: number
}

/** The two browser primitives the tabs share a poll with; only what the client uses of them. */
export interface CometSharing {
  /** The Web Locks API: `navigator.locks` in a browser. */
  locks: CometLocks
  /** The BroadcastChannel constructor. */
  BroadcastChannel: new (name: string) => CometBroadcastChannel
}

export interface CometLocks {
  request: (name: string, options: { steal?: boolean, signal?: AbortSignal }, callback: () => Promise<void>) => Promise<unknown>
  query?: () => Promise<{ held?: Array<{ name?: string }>, pending?: Array<{ name?: string }> }>
}

export interface CometBroadcastChannel {
  postMessage (message: unknown): void
  addEventListener (type: 'message', listener: (event: { data: unknown }) => void): void
  close (): void
}

export interface CometClientOptions {
  /**
   * Where the plugin's routes are: its `prefix`, as an absolute URL, or relative to the page in a
   * browser.
   * @default '/comet'
   */
  url?: string
  /** The fetch to use, say one that adds credentials. @default globalThis.fetch */
  fetch?: typeof fetch
  retry?: CometRetryOptions
  /**
   * Share one long-poll among the tabs of this origin that use the same `url` (in a page with
   * `navigator.locks` and `BroadcastChannel`). `false` gives this client a poll of its own; an
   * object names the primitives to share with (tests, other environments).
   * @default true
   */
  share?: boolean | CometSharing
  /**
   * Milliseconds to wait for an answer beyond the wait the server announces (its `Comet-Wait`
   * header) before a poll is taken for lost on a connection that died silently, aborted and made
   * again. A poll answered at once (`wait=0`) gets this long in all.
   * @default 10000
   */
  timeoutMargin?: number
  /** Called on every change of `state`. */
  onStateChange?: (state: CometClientState, previous: CometClientState) => void
  /**
   * The server no longer holds every event after the cursors of these channels (its history
   * evicted them, or it restarted): reload what you show from them. Called before that answer's
   * events are delivered.
   */
  onGap?: (channels: string[]) => void
  /** A poll failed; the client retries by itself. */
  onError?: (error: Error) => void
}

export interface CometSubscribeOptions {
  /** Deliver the events the server still holds for the channel first (recent chat lines, say). */
  history?: boolean
}

export interface CometSubscription {
  /**
   * Resolves once the server has answered a poll for the channel (with its held history, when
   * asked): from then on no event published on it is missed. Rejects if the subscription ends
   * first (unsubscribe or close).
   */
  readonly ready: Promise<void>
  /** Stops this listener; the channel is left when it has no listener any more. */
  unsubscribe: () => void
}

/** An error answer of the server (`statusCode`, `code` and `message` are the server's), or a misuse. */
export class CometClientError extends Error {
  readonly code: string
  /** The HTTP status of the answer, for errors that come from the server. */
  readonly statusCode: number | undefined
  /** Seconds to wait before asking again, from a Retry-After header. */
  readonly retryAfter: number | undefined

  constructor (message: string, code: string, statusCode?: number, retryAfter?: number) {
    super(message)
    this.name = 'CometClientError'
    this.code = code
    this.statusCode = statusCode
    this.retryAfter = retryAfter
  }
}

interface Listener {
  readonly onEvent: CometListener
  readonly settleReady: (error?: CometClientError) => void
}

interface WireEvent {
  id: string
  data: unknown
}

interface PollReply {
  s: 0 | 1
  m?: Record<string, WireEvent[]>
  p: Record<string, string>
  gap?: string[]
}

type PollState = 'idle' | 'connecting' | 'connected' | 'reconnecting'

/**
 * What one poll's answer brought for one channel: its events after `from` (null when the poll
 * asked for "now" or "all": the channel's first answer), and the cursor after them.
 */
interface Batch {
  c: string
  from: string | null
  m: WireEvent[]
  p: string
  gap: boolean
}

interface ErrorShape {
  name: string
  message: string
  code?: string | undefined
  statusCode?: number | undefined
  retryAfter?: number | undefined
}

// What the tabs say to each other. `from` is the sending tab. The leader sends lead, beat, state,
// reply, ack and error; every tab (the leader's own included) sends join, leave, here, need and ping.
type Message =
  | { t: 'lead', from: string }
  | { t: 'beat' | 'state', from: string, state: PollState }
  | { t: 'reply', from: string, items: Batch[] }
  | { t: 'ack', from: string, to: string, c: string, cursor: string | null, state: PollState }
  | { t: 'error', from: string, error: ErrorShape }
  | { t: 'join', from: string, c: string, history: boolean }
  | { t: 'leave', from: string, c: string }
  | { t: 'here', from: string, channels: Array<{ c: string, cursor: string | undefined, history: boolean }> }
  | { t: 'need', from: string, c: string, cursor: string }
  | { t: 'ping', from: string }

type MemberMessage = Extract<Message, { t: 'join' | 'leave' | 'here' | 'need' | 'ping' }>

/** The same rule as the server's: characters that need no escaping in a URL or JSON. */
const channelNameRegExp = /^[A-Za-z0-9_.:@-]{1,128}$/

// A waiting poll answered with nothing faster than this is a server that will not wait (one that is
// closing, say): back off, rather than ask again at once, again and again.
const quickEmptyAnswerMs = 100

const defaultRetry = { initialDelay: 500, maxDelay: 10_000 }
const defaultTimeoutMargin = 10_000

/** How often the leader says it is alive, and followers check that it is. */
const beatMs = 1000
/** Silence from the leader after which a follower asks it, and after which it takes over. */
const pingAfterMs = 1500
const stealAfterMs = 3000
/** An answer that a tab could not place (its start is not a cursor the tab has passed) for this long means the tab fell behind: it asks the leader to poll from its own cursor. */
const stuckMs = 2000
/** How long a new leader keeps polling the channels it inherited before a tab claims them. */
const inheritedGraceMs = 2000
/** Cursors and event ids a tab remembers per channel, to recognise answers and repeats. */
const seenLimit = 1000
/** Requests a tab makes at most to read a channel's history. */
const historyRequests = 20

/** One channel as a tab holds it. */
interface TabChannel {
  /** The cursor after the last event delivered; undefined until the channel's first answer. */
  head: string | undefined
  /** The held history was asked for. */
  history: boolean
  /** Cursors passed and event ids delivered, oldest first. */
  readonly seen: Set<string>
  readonly listeners: Set<Listener>
  /** Answers that start at a cursor this tab has not passed (yet), with when they came. */
  buffered: Array<{ batch: Batch, at: number }>
  lastNeed: number
  /** While the history is read: the events that came meanwhile, delivered after it. */
  loading: WireEvent[] | undefined
  ready: boolean
}

/** One channel as the poll asks for it. */
interface PolledChannel {
  /** '0' (from now) or 'all' (what is held) until the server gives a cursor. */
  cursor: string
  confirmed: boolean
  /** The tabs that want it, with when they joined. */
  readonly members: Map<string, number>
  /** Kept without members until then: inherited from the previous leader, not yet claimed. */
  keepUntil: number
}

export class CometClient {
  readonly #base: URL
  readonly #fetch: typeof fetch
  readonly #retry: Required<CometRetryOptions>
  readonly #timeoutMargin: number
  readonly #options: CometClientOptions
  readonly #channels = new Map<string, TabChannel>()
  readonly #tab = Math.random().toString(36).slice(2) + Date.now().toString(36)
  readonly #sharing: CometSharing | undefined
  /** The lock whose holder leads, and the name of the BroadcastChannel. */
  readonly #key: string
  #state: CometClientState = 'idle'
  /** The shared poll's state, as the leader last said. */
  #pollState: PollState | undefined
  /** The poll this tab runs: always without sharing, while it leads with sharing. */
  #poller: Poller | undefined
  #channel: CometBroadcastChannel | undefined
  #leader: string | undefined
  #lastHeard = 0
  #pinged = false
  /** The channels and cursors of the last answer seen: what a new leader starts from. */
  #lastPolled = new Map<string, string>()
  #leadAttempt = 0
  #leadRequest: AbortController | undefined
  #resign: (() => void) | undefined
  #releaseTabLock: (() => void) | undefined
  #beat: ReturnType<typeof setInterval> | undefined

  constructor (options: CometClientOptions = {}) {
    const { url = '/comet', fetch: fetchFunction, retry = {}, share = true, timeoutMargin = defaultTimeoutMargin } = options
    this.#options = options
    this.#base = resolveBase(url)
    this.#fetch = fetchFunction ?? ((input, init) => globalThis.fetch(input, init))
    this.#retry = { ...defaultRetry, ...retry }
    for (const [name, value] of Object.entries({ ...this.#retry, timeoutMargin })) {
      if (!(typeof value === 'number' && value >= 0 && value < Infinity)) {
        const option = name === 'timeoutMargin' ? name : `retry.${name}`
        throw new TypeError(`fastify-comet client: ${option} must be a number of milliseconds (got ${String(value)})`)
      }
    }
    this.#timeoutMargin = timeoutMargin
    this.#sharing = share === true ? pageSharing() : share === false ? undefined : share
    this.#key = `fastify-comet ${this.#base.href}`
  }

  get state (): CometClientState {
    return this.#state
  }

  /** Calls `onEvent` for each event published on `channel` from now on (or from its held history). */
  subscribe (channel: string, onEvent: CometListener, { history = false }: CometSubscribeOptions = {}): CometSubscription {
    this.#assertOpen()
    assertChannelName(channel)
    if (typeof onEvent !== 'function') throw new TypeError('fastify-comet client: subscribe() needs a function to call with each event')

    let settleReady!: Listener['settleReady']
    const ready = new Promise<void>((resolve, reject) => {
      settleReady = error => { error === undefined ? resolve() : reject(error) }
    })
    // Whoever does not wait for `ready` must not get an unhandled rejection from it.
    ready.catch(() => {})
    const listener: Listener = { onEvent, settleReady }

    let state = this.#channels.get(channel)
    if (state === undefined) {
      state = { head: undefined, history, seen: new Set(), listeners: new Set([listener]), buffered: [], lastNeed: 0, loading: undefined, ready: false }
      this.#channels.set(channel, state)
      this.#start()
      this.#toLeader({ t: 'join', from: this.#tab, c: channel, history })
      this.#refreshState()
    } else {
      state.listeners.add(listener)
      if (history && state.head === undefined && !state.history) {
        state.history = true
        this.#toLeader({ t: 'join', from: this.#tab, c: channel, history })
      }
    }
    if (state.ready) settleReady()

    return {
      ready,
      unsubscribe: () => {
        const current = this.#channels.get(channel)
        if (current?.listeners.delete(listener) !== true) return
        settleReady(unsubscribedError(channel))
        if (current.listeners.size === 0) this.unsubscribe(channel)
      }
    }
  }

  /** Stops every listener of `channel`. */
  unsubscribe (channel: string): void {
    const state = this.#channels.get(channel)
    if (state === undefined) return
    this.#channels.delete(channel)
    const error = unsubscribedError(channel)
    for (const listener of state.listeners) listener.settleReady(error)
    state.listeners.clear()
    this.#toLeader({ t: 'leave', from: this.#tab, c: channel })
    this.#refreshState()
  }

  /** Publishes through the plugin's publish route. Not retried: a publish is not idempotent. */
  async publish (channel: string, data?: unknown): Promise<{ id: string }> {
    this.#assertOpen()
    assertChannelName(channel)
    const init: RequestInit = { method: 'POST' }
    if (data !== undefined) {
      init.headers = { 'content-type': 'application/json' }
      init.body = JSON.stringify(data)
    }
    // ?channel= rather than the path: URL parsers turn the names "." and ".." into dot segments.
    const response = await this.#fetch(new URL(`publish?channel=${encodeURIComponent(channel)}`, this.#base), init)
    if (!response.ok) throw await errorOf(response)
    return await response.json() as { id: string }
  }

  /** Ends the poll in flight and every retry; subscriptions not yet ready reject. */
  close (): void {
    if (this.#state === 'closed') return
    const channels = [...this.#channels]
    this.#channels.clear()
    this.#setState('closed')
    const error = new CometClientError('fastify-comet client: closed before the subscription was ready', 'FST_COMET_CLIENT_CLOSED')
    for (const [name, state] of channels) {
      for (const listener of state.listeners) listener.settleReady(error)
      state.listeners.clear()
      if (this.#poller === undefined) this.#toLeader({ t: 'leave', from: this.#tab, c: name })
    }
    // A leader that closes hands over at once: the next tab in the lock's queue starts from the
    // cursors of the last answer.
    this.#leadAttempt++
    this.#leadRequest?.abort()
    this.#stopLeading()
    this.#releaseTabLock?.()
    clearInterval(this.#beat)
    this.#channel?.close()
  }

  // The first subscribe starts the poll of its own, or joins the tabs that share one.
  #start (): void {
    if (this.#sharing === undefined) {
      this.#poller ??= this.#newPoller(new Map())
      return
    }
    if (this.#channel !== undefined) return
    const { locks, BroadcastChannel } = this.#sharing
    this.#channel = new BroadcastChannel(this.#key)
    this.#channel.addEventListener('message', event => { this.#receive(event.data as Message) })
    // Held while the tab lives: the leader asks the lock manager which tabs are still there.
    void locks.request(`${this.#key} tab ${this.#tab}`, {}, () => new Promise<void>(resolve => { this.#releaseTabLock = resolve }))
    this.#lastHeard = Date.now()
    this.#beat = setInterval(() => { this.#onBeat() }, beatMs)
    ;(this.#beat as { unref?: () => void }).unref?.()
    const page = globalThis as { document?: { addEventListener?: (type: string, listener: () => void) => void } }
    /* c8 ignore start: only a browser freezes a page */
    page.document?.addEventListener?.('freeze', () => {
      // A frozen tab can neither poll nor pass answers on: it lets another lead.
      this.#leadAttempt++
      this.#leadRequest?.abort()
      this.#stopLeading()
    })
    page.document?.addEventListener?.('resume', () => {
      if (this.#state !== 'closed') this.#requestLead(false)
    })
    /* c8 ignore stop */
    this.#requestLead(false)
  }

  #requestLead (steal: boolean): void {
    const attempt = ++this.#leadAttempt
    this.#leadRequest?.abort()
    const controller = new AbortController()
    this.#leadRequest = steal ? undefined : controller
    const options = steal ? { steal: true } : { signal: controller.signal }
    // Stolen by a tab that found this one frozen, or handed over to a tab that took over: follow,
    // and queue to lead again.
    const follow = (): void => {
      if (attempt !== this.#leadAttempt || this.#state === 'closed') return
      this.#stopLeading()
      this.#requestLead(false)
    }
    this.#sharing?.locks.request(this.#key, options, async () => { await this.#lead(attempt) }).then(follow, follow)
  }

  async #lead (attempt: number): Promise<void> {
    if (attempt !== this.#leadAttempt || this.#state === 'closed') return
    this.#leader = this.#tab
    this.#poller = this.#newPoller(this.#lastPolled)
    this.#post({ t: 'lead', from: this.#tab })
    await new Promise<void>(resolve => { this.#resign = resolve })
  }

  #stopLeading (): void {
    if (this.#poller === undefined) return
    this.#poller.stop()
    this.#poller = undefined
    // The next leader's first message names it.
    this.#leader = undefined
    this.#resign?.()
    this.#resign = undefined
  }

  #newPoller (inherited: ReadonlyMap<string, string>): Poller {
    const poller = new Poller({
      tab: this.#tab,
      fetch: this.#fetch,
      base: this.#base,
      retry: this.#retry,
      timeoutMargin: this.#timeoutMargin,
      state: this.#pollState,
      send: message => {
        this.#post(message)
        this.#receive(message)
      },
      onError: error => {
        this.#post({ t: 'error', from: this.#tab, error: { name: error.name, message: error.message, code: (error as CometClientError).code, statusCode: (error as CometClientError).statusCode, retryAfter: (error as CometClientError).retryAfter } })
        this.#call(this.#options.onError, error)
      }
    })
    const now = Date.now()
    for (const [name, cursor] of inherited) poller.inherit(name, cursor, now + inheritedGraceMs)
    for (const [name, state] of this.#channels) {
      poller.handle({ t: 'join', from: this.#tab, c: name, history: state.history }, state.head)
    }
    return poller
  }

  #post (message: Message): void {
    this.#channel?.postMessage(message)
  }

  #toLeader (message: MemberMessage): void {
    if (this.#poller !== undefined) this.#poller.handle(message)
    else this.#post(message)
  }

  #onBeat (): void {
    const poller = this.#poller
    if (poller !== undefined) {
      this.#post({ t: 'beat', from: this.#tab, state: poller.state })
      // Tabs closed or crashed hold no lock any more: their channels need no polling.
      void this.#sharing?.locks.query?.().then(snapshot => {
        const prefix = `${this.#key} tab `
        // Held or still queued: a tab's lock is granted at once, but a snapshot may come first.
        const names = Object.values(snapshot).flat().map(lock => String(lock.name))
        const alive = new Set(names.filter(name => name.startsWith(prefix)).map(name => name.slice(prefix.length)))
        poller.prune(alive, Date.now())
      })
      return
    }
    const silence = Date.now() - this.#lastHeard
    if (silence > stealAfterMs) {
      // The leader is frozen (a background tab) or gone without its lock: take over.
      this.#lastHeard = Date.now()
      this.#pinged = false
      this.#requestLead(true)
    } else if (silence > pingAfterMs && !this.#pinged) {
      this.#pinged = true
      this.#post({ t: 'ping', from: this.#tab })
    }
    this.#checkStuck()
  }

  #receive (message: Message): void {
    if (this.#state === 'closed') return
    switch (message.t) {
      case 'join': case 'leave': case 'here': case 'need': case 'ping':
        this.#poller?.handle(message)
        return
      case 'lead':
        // Another tab leads. If this one led, its lock was stolen: the lock's rejection makes it
        // follow (not this message, which may be older than this tab's own lead).
        if (this.#poller === undefined) this.#leader = message.from
        this.#heard()
        this.#post({ t: 'here', from: this.#tab, channels: [...this.#channels].map(([c, state]) => ({ c, cursor: state.head, history: state.history })) })
        return
    }
    this.#leader ??= message.from
    if (message.from === this.#leader) this.#heard()
    switch (message.t) {
      case 'beat': case 'state':
        if (message.from === this.#leader) this.#setPollState(message.state)
        break
      case 'ack':
        if (message.to === this.#tab) this.#onAck(message.c, message.cursor, message.state)
        break
      case 'error':
        if (message.from !== this.#tab && message.from === this.#leader) this.#call(this.#options.onError, asError(message.error))
        break
      case 'reply':
        this.#onReply(message.items)
        break
    }
    this.#checkStuck()
  }

  #heard (): void {
    this.#lastHeard = Date.now()
    this.#pinged = false
  }

  #onAck (name: string, cursor: string | null, pollState: PollState): void {
    const state = this.#channels.get(name)
    this.#setPollState(pollState)
    if (state === undefined || state.head !== undefined || cursor === null) return
    // The channel was polled already, for other tabs: this one follows from its cursor on, and
    // what came before belongs to before it joined.
    state.head = cursor
    state.buffered = []
    remember(state, cursor)
    if (state.history) {
      void this.#readHistory(name, state)
    } else {
      this.#markReady(state)
    }
    this.#refreshState()
  }

  #onReply (batches: readonly Batch[]): void {
    const gaps: string[] = []
    const placed: Array<[string, TabChannel, WireEvent[]]> = []
    for (const batch of batches) {
      this.#lastPolled.set(batch.c, batch.p)
      const state = this.#channels.get(batch.c)
      // A first answer for a tab that has had its own already (another leader's, around a takeover).
      if (state === undefined || (batch.from === null && state.head !== undefined)) continue
      const first = state.head === undefined
      const fresh = place(state, batch)
      // What came before the tab's first answer belongs to before it joined.
      if (first && fresh !== undefined) state.buffered = []
      if (fresh === undefined) {
        // Bounded in time: #checkStuck drops what stays unplaced.
        state.buffered.push({ batch, at: Date.now() })
        continue
      }
      if (batch.gap) gaps.push(batch.c)
      placed.push([batch.c, state, fresh])
    }
    // The leader's last answer names every channel it polls.
    for (const name of this.#lastPolled.keys()) {
      if (!batches.some(batch => batch.c === name)) this.#lastPolled.delete(name)
    }
    this.#refreshState()
    if (gaps.length > 0) this.#call(this.#options.onGap, gaps)
    for (const [name, state, events] of placed) {
      this.#deliver(name, state, events)
      this.#placeBuffered(name, state)
      this.#markReady(state)
    }
  }

  // Answers that came out of order (from two leaders around a takeover) fit once those before them did.
  #placeBuffered (name: string, state: TabChannel): void {
    for (let i = 0; i < state.buffered.length; i++) {
      const fresh = place(state, (state.buffered[i] as { batch: Batch }).batch)
      if (fresh === undefined) continue
      const { batch } = state.buffered.splice(i, 1)[0] as { batch: Batch }
      if (batch.gap) this.#call(this.#options.onGap, [name])
      this.#deliver(name, state, fresh)
      i = -1
    }
  }

  #deliver (name: string, state: TabChannel, events: readonly WireEvent[]): void {
    if (state.loading !== undefined) {
      state.loading.push(...events)
      return
    }
    for (const event of events) {
      // A listener may unsubscribe (or close the client): those removed are not called again.
      for (const listener of state.listeners) this.#call(listener.onEvent, event.data, { channel: name, id: event.id })
    }
  }

  #markReady (state: TabChannel): void {
    if (state.ready || state.head === undefined || state.loading !== undefined) return
    state.ready = true
    for (const listener of state.listeners) listener.settleReady()
  }

  // This tab fell behind the shared poll (answers it cannot place, for a while): the leader polls
  // once more from this tab's cursor; the tabs that had those events already skip them.
  #checkStuck (): void {
    const now = Date.now()
    for (const [name, state] of this.#channels) {
      const stale = state.buffered.filter(({ at }) => now - at > stuckMs)
      if (stale.length === 0 || state.head === undefined || now - state.lastNeed < stuckMs) continue
      state.buffered = state.buffered.filter(entry => !stale.includes(entry))
      state.lastNeed = now
      this.#toLeader({ t: 'need', from: this.#tab, c: name, cursor: state.head })
    }
  }

  // A tab joining a channel that the shared poll has had for a while reads the held history on its
  // own, then delivers what the shared poll brought meanwhile, less the events the history had.
  async #readHistory (name: string, state: TabChannel): Promise<void> {
    state.loading = []
    const held: WireEvent[] = []
    let cursor = 'all'
    let complete = false
    for (let request = 0, failures = 0; request < historyRequests && failures < 3 && !complete; request++) {
      try {
        const url = new URL(`subscribe?${encodeURIComponent(`subscribed[${name}]`)}=${encodeURIComponent(cursor)}&wait=0`, this.#base)
        const response = await this.#fetch(url, { headers: { accept: 'application/json' } })
        if (!response.ok) throw await errorOf(response)
        const reply = asPollReply(await response.json())
        const events = reply.m?.[name] ?? []
        held.push(...events)
        cursor = reply.p[name] as string
        complete = events.length === 0
      } catch (error) {
        failures++
        this.#call(this.#options.onError, error as Error)
        await sleep(Math.random() * this.#retry.initialDelay * 2 ** failures)
      }
      if (this.#channels.get(name) !== state) return
    }
    const meanwhile = state.loading
    state.loading = undefined
    // The history could not be read whole: the page reloads what it shows some other way.
    if (!complete) this.#call(this.#options.onGap, [name])
    const heldIds = new Set(held.map(event => event.id))
    this.#deliver(name, state, held)
    this.#deliver(name, state, meanwhile.filter(event => !heldIds.has(event.id)))
    for (const id of heldIds) remember(state, id)
    this.#markReady(state)
  }

  #setPollState (state: PollState): void {
    this.#pollState = state
    this.#refreshState()
  }

  // A tab is connected when the shared poll is and has answered for one of its channels at least.
  #refreshState (): void {
    const poll = this.#pollState
    let state: CometClientState = 'connecting'
    if (this.#channels.size === 0) state = 'idle'
    else if (poll === 'reconnecting') state = poll
    else if (poll === 'connected' && [...this.#channels.values()].some(channel => channel.head !== undefined)) state = poll
    this.#setState(state)
  }

  #setState (state: CometClientState): void {
    const previous = this.#state
    if (state === previous) return
    this.#state = state
    this.#call(this.#options.onStateChange, state, previous)
  }

  #assertOpen (): void {
    if (this.#state === 'closed') throw new CometClientError('fastify-comet client: the client is closed; create a new one', 'FST_COMET_CLIENT_CLOSED')
  }

  // An app's callback that throws must not stop the poll loop, nor the other listeners: its error
  // is thrown again outside the loop, where the page's or process's error reporting sees it.
  #call<A extends unknown[]> (callback: ((...args: A) => void) | undefined, ...args: A): void {
    callSafely(callback, ...args)
  }
}

/**
 * Where `batch` fits in what the tab has: undefined when its start is not a cursor the tab has
 * passed (it came early, or belongs to before the tab joined), else the events the tab has not had,
 * in order. The tab's cursor moves past them.
 */
function place (state: TabChannel, batch: Batch): WireEvent[] | undefined {
  if (batch.from === null ? state.head !== undefined : !state.seen.has(batch.from)) return undefined
  const fresh = batch.m.filter(event => !state.seen.has(event.id))
  for (const event of fresh) remember(state, event.id)
  // With no new event, only an answer from the tab's own cursor moves it: an older one could move it back.
  if (fresh.length > 0 || batch.from === (state.head ?? null)) state.head = batch.p
  remember(state, batch.p)
  return fresh
}

function remember (state: TabChannel, cursor: string): void {
  state.seen.delete(cursor)
  state.seen.add(cursor)
  if (state.seen.size > seenLimit) state.seen.delete(state.seen.values().next().value as string)
}

interface PollerOptions {
  tab: string
  fetch: typeof fetch
  base: URL
  retry: Required<CometRetryOptions>
  timeoutMargin: number
  state: PollState | undefined
  /** To every tab, this one included. */
  send: (message: Message) => void
  onError: (error: Error) => void
}

/** The long-poll loop for the channels of every tab: what the leader runs (or a client alone). */
class Poller {
  readonly #options: PollerOptions
  readonly #channels = new Map<string, PolledChannel>()
  #state: PollState
  #running = false
  #stopped = false
  /** The poll in flight: aborted for a change of channels, or by the watchdog. */
  #inFlight: { controller: AbortController, waits: boolean } | undefined
  /** Ends the backoff wait early. */
  #wakeUp: (() => void) | undefined
  /** Failures in a row. */
  #failures = 0
  /** How long the server lets a poll wait, from its Comet-Wait header. */
  #serverWaitMs: number | undefined
  /** No poll answered yet: the first one answers at once, and tells the server's wait. */
  #fresh = true

  constructor (options: PollerOptions) {
    this.#options = options
    // A tab taking over from a connected leader stays connected, unless its first poll fails.
    this.#state = options.state ?? 'idle'
  }

  get state (): PollState {
    return this.#state
  }

  inherit (name: string, cursor: string, keepUntil: number): void {
    this.#channels.set(name, { cursor, confirmed: true, members: new Map(), keepUntil })
    this.#restart(false)
  }

  /** A tab's request; `head` is the cursor of the leader's own tab when it takes over. */
  handle (message: MemberMessage, head?: string): void {
    const { tab } = this.#options
    switch (message.t) {
      case 'join': {
        let channel = this.#channels.get(message.c)
        if (channel === undefined) {
          const cursor = head ?? (message.history ? 'all' : '0')
          channel = { cursor, confirmed: head !== undefined, members: new Map(), keepUntil: 0 }
          this.#channels.set(message.c, channel)
          this.#restart(false)
        } else if (message.history && !channel.confirmed && channel.cursor !== 'all') {
          // Asked before the first answer: that answer brings the history to every tab that waits for it.
          channel.cursor = 'all'
          this.#restart(true)
        }
        if (!channel.members.has(message.from)) channel.members.set(message.from, Date.now())
        this.#options.send({ t: 'ack', from: tab, to: message.from, c: message.c, cursor: channel.confirmed ? channel.cursor : null, state: this.#state })
        break
      }
      case 'leave':
        this.#leave(message.from, message.c)
        break
      case 'here': {
        const named = new Set(message.channels.map(({ c }) => c))
        for (const [name] of this.#channels) {
          if (!named.has(name)) this.#leave(message.from, name)
        }
        for (const { c, cursor, history } of message.channels) this.handle({ t: 'join', from: message.from, c, history }, cursor)
        break
      }
      case 'need': {
        const channel = this.#channels.get(message.c)
        if (channel === undefined) break
        channel.cursor = message.cursor
        channel.confirmed = true
        this.#restart(true)
        break
      }
      case 'ping':
        this.#options.send({ t: 'beat', from: tab, state: this.#state })
        break
    }
  }

  /** Forgets the tabs that are gone (a tab that just joined may not hold its lock yet), and the channels no tab wants. */
  prune (alive: ReadonlySet<string>, now: number): void {
    for (const [name, channel] of this.#channels) {
      for (const [member, joined] of channel.members) {
        if (!alive.has(member) && now - joined > inheritedGraceMs) channel.members.delete(member)
      }
      if (channel.members.size === 0 && now >= channel.keepUntil) {
        this.#channels.delete(name)
        this.#restart(false)
      }
    }
  }

  stop (): void {
    this.#stopped = true
    this.#inFlight?.controller.abort()
    this.#wakeUp?.()
  }

  #leave (tab: string, name: string): void {
    const channel = this.#channels.get(name)
    if (channel?.members.delete(tab) !== true || channel.members.size > 0) return
    this.#channels.delete(name)
    this.#restart(false)
  }

  // The set of channels changed: a waiting poll asks for the wrong ones. Aborting it loses nothing:
  // cursors move only when an answer is handled, so the next poll asks again from them. A poll that
  // answers at once is let finish (its answer is applied to the channels still polled), unless it
  // asks from a cursor that is no longer the one wanted.
  #restart (force: boolean): void {
    if (this.#inFlight !== undefined && (this.#inFlight.waits || force)) this.#inFlight.controller.abort()
    if (this.#running || this.#stopped) return
    this.#running = true
    // After the current task, so that several subscribes in a row make one poll.
    queueMicrotask(() => { void this.#loop() })
  }

  async #loop (): Promise<void> {
    try {
      while (!this.#stopped && this.#channels.size > 0) {
        if (this.#state === 'idle') this.#setState('connecting')
        await this.#pollOnce()
      }
    } finally {
      this.#running = false
    }
    if (!this.#stopped) this.#setState('idle')
  }

  async #pollOnce (): Promise<void> {
    const asked = [...this.#channels].map(([name, channel]) => ({ name, channel, cursor: channel.cursor, confirmed: channel.confirmed }))
    // Until the server has answered for every channel, and after a failure, it answers at once.
    const wait = !this.#fresh && this.#state === 'connected' && asked.every(({ confirmed }) => confirmed)
    const query = asked.map(({ name, cursor }) => `${encodeURIComponent(`subscribed[${name}]`)}=${encodeURIComponent(cursor)}`)
    if (!wait) query.push('wait=0')
    const url = new URL(`subscribe?${query.join('&')}`, this.#options.base)

    const controller = new AbortController()
    const flight = { controller, waits: wait }
    this.#inFlight = flight
    // The watchdog: a connection that died silently (a NAT or a mobile network dropping it) never
    // answers. Without the server's wait known, a waiting poll has none.
    const limit = wait ? (this.#serverWaitMs === undefined ? undefined : this.#serverWaitMs + this.#options.timeoutMargin) : this.#options.timeoutMargin
    let timedOut = false
    const watchdog = limit === undefined
      ? undefined
      : setTimeout(() => {
        timedOut = true
        controller.abort()
      }, limit)
    const started = Date.now()
    let reply: PollReply | undefined
    let failure: unknown
    try {
      const response = await this.#options.fetch(url, { signal: controller.signal, headers: { accept: 'application/json' } })
      if (!response.ok) throw await errorOf(response)
      const serverWait = Number.parseFloat(response.headers.get('comet-wait') ?? '')
      if (serverWait >= 0) this.#serverWaitMs = serverWait * 1000
      reply = asPollReply(await response.json())
    } catch (error) {
      failure = error
    } finally {
      clearTimeout(watchdog)
      if (this.#inFlight === flight) this.#inFlight = undefined
    }
    // Aborted for a change of channels, or by stop(), perhaps after the answer was read: the
    // next poll asks again from the same cursors, or the loop ends.
    if (controller.signal.aborted && !timedOut) return
    if (reply === undefined && timedOut) {
      failure = new CometClientError(`fastify-comet client: no answer to a poll within ${String(limit)} ms; the connection is taken for dead and the poll made again`, 'FST_COMET_CLIENT_TIMEOUT')
    }

    if (reply === undefined) {
      this.#failures++
      this.#setState('reconnecting')
      this.#options.onError(failure as Error)
      return await this.#backOff(failure)
    }
    const quickEmptyAnswer = wait && reply.s === 0 && Date.now() - started < quickEmptyAnswerMs
    this.#failures = quickEmptyAnswer ? this.#failures + 1 : 0
    this.#fresh = false
    this.#setState('connected')
    this.#answer(asked, reply)
    if (quickEmptyAnswer) await this.#backOff(undefined)
  }

  #answer (asked: ReadonlyArray<{ name: string, channel: PolledChannel, cursor: string, confirmed: boolean }>, reply: PollReply): void {
    const batches: Batch[] = []
    for (const { name, channel, cursor, confirmed } of asked) {
      const next = reply.p[name]
      // Left meanwhile (and perhaps joined again), or moved by a tab that fell behind.
      if (next === undefined || this.#channels.get(name) !== channel || channel.cursor !== cursor) continue
      channel.cursor = next
      channel.confirmed = true
      batches.push({ c: name, from: confirmed ? cursor : null, m: reply.m?.[name] ?? [], p: next, gap: reply.gap?.includes(name) ?? false })
    }
    this.#options.send({ t: 'reply', from: this.#options.tab, items: batches })
  }

  // Exponential backoff with full jitter; a Retry-After is a floor, a 4xx other than 408/429 waits
  // the longest. A browser coming back online retries at once.
  async #backOff (error: unknown): Promise<void> {
    const { initialDelay, maxDelay } = this.#options.retry
    const ceiling = Math.min(maxDelay, initialDelay * 2 ** (this.#failures - 1))
    let delay = Math.random() * ceiling
    if (error instanceof CometClientError) {
      if (isClientError(error.statusCode)) delay = maxDelay
      if (error.retryAfter !== undefined) delay = Math.max(delay, error.retryAfter * 1000)
    }
    if (this.#stopped) return
    const events = globalThis as { addEventListener?: (type: string, listener: () => void) => void, removeEventListener?: (type: string, listener: () => void) => void }
    await new Promise<void>(resolve => {
      const timer = setTimeout(done, delay)
      events.addEventListener?.('online', done)
      this.#wakeUp = done
      function done (): void {
        clearTimeout(timer)
        events.removeEventListener?.('online', done)
        resolve()
      }
    })
    this.#wakeUp = undefined
  }

  #setState (state: PollState): void {
    if (state === this.#state) return
    this.#state = state
    this.#options.send({ t: 'state', from: this.#options.tab, state })
  }
}

// Sharing needs a page (Node.js keeps a poll per client) with both primitives.
function pageSharing (): CometSharing | undefined {
  const page = globalThis as unknown as { document?: unknown, navigator?: { locks?: CometLocks }, BroadcastChannel?: CometSharing['BroadcastChannel'] }
  /* c8 ignore next 3: only a browser has them; the browser test runs this */
  if (page.document !== undefined && page.navigator?.locks !== undefined && page.BroadcastChannel !== undefined) {
    return { locks: page.navigator.locks, BroadcastChannel: page.BroadcastChannel }
  }
  return undefined
}

function callSafely<A extends unknown[]> (callback: ((...args: A) => void) | undefined, ...args: A): void {
  try {
    callback?.(...args)
  } catch (error) {
    queueMicrotask(() => { throw error })
  }
}

function asError ({ name, message, code, statusCode, retryAfter }: ErrorShape): Error {
  if (code === undefined) return Object.assign(new Error(message), { name })
  return new CometClientError(message, code, statusCode, retryAfter)
}

function sleep (ms: number): Promise<void> {
  return new Promise(resolve => setTimeout(resolve, ms))
}

function resolveBase (url: string): URL {
  const page = (globalThis as { location?: { href: string } }).location?.href
  // A trailing slash, so that "subscribe" resolves under the prefix rather than beside it.
  const withSlash = url.endsWith('/') ? url : `${url}/`
  try {
    return new URL(withSlash, page)
  } catch {
    throw new TypeError(`fastify-comet client: url must be absolute outside a browser, such as "http://localhost:3000/comet" (got ${JSON.stringify(url)})`)
  }
}

function assertChannelName (channel: unknown): void {
  if (typeof channel !== 'string' || !channelNameRegExp.test(channel)) {
    throw new CometClientError(`fastify-comet client: invalid channel name ${JSON.stringify(channel)}; a channel name has 1 to 128 characters from A-Z a-z 0-9 _ - . : @`, 'FST_COMET_INVALID_CHANNEL')
  }
}

function unsubscribedError (channel: string): CometClientError {
  return new CometClientError(`fastify-comet client: unsubscribed from "${channel}" before it was ready`, 'FST_COMET_CLIENT_UNSUBSCRIBED')
}

function isClientError (statusCode: number | undefined): boolean {
  return statusCode !== undefined && statusCode >= 400 && statusCode < 500 && statusCode !== 408 && statusCode !== 429
}

async function errorOf (response: Response): Promise<CometClientError> {
  const retryAfter = Number.parseInt(response.headers.get('retry-after') ?? '', 10)
  const text = await response.text().catch(() => '')
  let body: { code?: unknown, message?: unknown } = {}
  try {
    body = JSON.parse(text) as typeof body
  } catch {}
  const message = typeof body.message === 'string' ? body.message : `HTTP ${response.status} ${text.slice(0, 200)}`.trim()
  const code = typeof body.code === 'string' ? body.code : `HTTP_${response.status}`
  return new CometClientError(message, code, response.status, Number.isNaN(retryAfter) ? undefined : retryAfter)
}

function asPollReply (body: unknown): PollReply {
  const reply = body as Partial<PollReply> | null
  if (typeof reply?.p !== 'object' || reply.p === null || (reply.s !== 0 && reply.s !== 1)) {
    throw new CometClientError('fastify-comet client: the answer is not a poll reply; is url the plugin\'s prefix?', 'FST_COMET_CLIENT_BAD_REPLY')
  }
  return reply as PollReply
}
