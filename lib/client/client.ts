// The client, for browsers and Node.js: one long-poll at a time for every channel subscribed, with
// the cursors kept here, so that nothing is lost or repeated across timeouts, reconnects and
// changes of channels. It needs only fetch and AbortController. In a browser, the tabs of one
// origin that use the same url share one long-poll (tab-sharing.ts).
//
// This is its public face (CometClient and the types an app meets); the plugin serves it, bundled
// with the modules it imports, at {prefix}/client.js, so that a page can import it without a build
// step. The modules, one job each: types.ts (the public types), errors.ts, tab-channels.ts (a tab's
// channels and the answers placed in them), tab-sharing.ts (leader election, messages between tabs),
// polled-channels.ts (the leader's channels), transport.ts (the seam to a transport), poller.ts (the
// long-poll transport), backoff.ts, failures.ts (what a failure means: warnings, refusals), wire.ts
// (the subscribe protocol as the client speaks it), messages.ts (what the tabs say to each other).
import { channelNameRule, cursorAllHeld, cursorFromNow, cursorPattern, isChannelName } from '../protocol/wire-format.js'
import { defaultRetry } from './backoff.js'
import { callSafely } from './call-safely.js'
import { closedError, CometClientError, isRefusal, refusedError, unsubscribedError } from './errors.js'
import { explainFailure, FailureWarnings } from './failures.js'
import { asError, type LeaderMessage } from './messages.js'
import { Poller } from './poller.js'
import { publishOnce } from './publisher.js'
import { type Listener, TabChannels } from './tab-channels.js'
import { pageSharing, TabSharing } from './tab-sharing.js'
import type { TransportState } from './transport.js'
import type { CometClientOptions, CometClientState, CometListener, CometRetryOptions, CometSubscribeOptions, CometSubscription } from './types.js'

export { CometClientError } from './errors.js'
export type * from './types.js'

const defaultTimeoutMargin = 10_000

export class CometClient {
  readonly #base: URL
  readonly #fetch: typeof fetch
  readonly #options: CometClientOptions
  readonly #tab = Math.random().toString(36).slice(2) + Date.now().toString(36)
  readonly #channels: TabChannels
  readonly #tabs: TabSharing
  readonly #maxDelay: number
  readonly #retry: Required<CometRetryOptions>
  readonly #warnings = new FailureWarnings()
  #state: CometClientState = 'idle'
  /** The shared poll's state, as the leader last said. */
  #pollState: TransportState | undefined

  constructor (options: CometClientOptions = {}) {
    const { url = '/comet', fetch: fetchFunction, retry: retryOptions = {}, share = true, timeoutMargin = defaultTimeoutMargin } = options
    this.#options = options
    const base = this.#base = resolveBase(url)
    const fetch = this.#fetch = fetchFunction ?? ((input, init) => globalThis.fetch(input, init))
    const retry: Required<CometRetryOptions> = { ...defaultRetry, ...retryOptions }
    for (const [name, value] of Object.entries({ ...retry, timeoutMargin })) {
      if (!(typeof value === 'number' && value >= 0 && value < Infinity)) {
        const option = name === 'timeoutMargin' ? name : `retry.${name}`
        throw new TypeError(`fastify-comet client: ${option} must be a number of milliseconds (got ${String(value)})`)
      }
    }
    this.#maxDelay = retry.maxDelay
    this.#retry = retry
    const tab = this.#tab
    this.#channels = new TabChannels({
      tab,
      fetch,
      base,
      initialDelay: retry.initialDelay,
      callbacks: options,
      onError: error => { this.#failed(error) },
      toLeader: message => { this.#tabs.toLeader(message) },
      onAnswer: () => { this.#refreshState() }
    })
    this.#tabs = new TabSharing({
      tab,
      key: `fastify-comet ${base.href}`,
      sharing: share === true ? pageSharing() : share === false ? undefined : share,
      transport: (host, state) => new Poller(host, { fetch, base, retry, timeoutMargin }, state),
      onError: error => { this.#failed(error) },
      transportState: () => this.#pollState,
      heads: () => this.#channels.heads(),
      closed: () => this.#state === 'closed',
      receive: (message, fromLeader) => { this.#receive(message, fromLeader) },
      onFollowerBeat: () => { this.#channels.checkStuck() }
    })
  }

  get state (): CometClientState {
    return this.#state
  }

  /**
   * Calls `onEvent` for each event published on `channel` from now on (or from its held history,
   * or after the cursor `after`).
   */
  subscribe (channel: string, onEvent: CometListener, { history = false, after }: CometSubscribeOptions = {}): CometSubscription {
    this.#assertOpen()
    assertChannelName(channel)
    if (typeof onEvent !== 'function') throw new TypeError('fastify-comet client: subscribe() needs a function to call with each event')
    if (after !== undefined) {
      assertCursor(after)
      if (history) throw new TypeError('fastify-comet client: subscribe() takes history or after, not both: after already says where to start')
      if (this.#channels.get(channel) !== undefined) {
        throw codedTypeError(`fastify-comet client: "${channel}" is subscribed already in this client, from where its first subscription asked; subscribe with after only once per channel (unsubscribe first, or give the event to your other listeners yourself)`, 'FST_COMET_CLIENT_SUBSCRIBED')
      }
    }

    let settleReady!: Listener['settleReady']
    const ready = new Promise<void>((resolve, reject) => {
      settleReady = error => { error === undefined ? resolve() : reject(error) }
    })
    // Whoever does not wait for `ready` must not get an unhandled rejection from it.
    ready.catch(() => {})
    const listener: Listener = { onEvent, settleReady }

    let state = this.#channels.get(channel)
    if (state === undefined) {
      state = this.#channels.add(channel, { history, after }, listener)
      this.#tabs.start()
      this.#tabs.toLeader({ t: 'join', from: this.#tab, c: channel, history, after })
      this.#refreshState()
    } else {
      state.listeners.add(listener)
      // A channel started after a cursor has nothing to add from the history.
      if (history && state.head === undefined && !state.history && state.after === undefined) {
        state.history = true
        this.#tabs.toLeader({ t: 'join', from: this.#tab, c: channel, history, after: undefined })
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
    this.#tabs.toLeader({ t: 'leave', from: this.#tab, c: channel })
    this.#refreshState()
  }

  /**
   * Publishes through the plugin's publish route, with an Idempotency-Key of its own: a network
   * failure or a 503 is retried with the same key (with the retry backoff, honouring Retry-After,
   * at most 6 tries in all), so the event is stored once. Rejects with the last failure, or at once
   * with the server's error for any other answer.
   */
  async publish (channel: string, data?: unknown): Promise<{ id: string }> {
    this.#assertOpen()
    assertChannelName(channel)
    // ?channel= rather than the path: URL parsers turn the names "." and ".." into dot segments.
    return await publishOnce({ fetch: this.#fetch, url: new URL(`publish?channel=${encodeURIComponent(channel)}`, this.#base), data, retry: this.#retry })
  }

  /** Ends the poll in flight and every retry; subscriptions not yet ready reject. */
  close (): void {
    if (this.#state === 'closed') return
    const channels = this.#channels.clear()
    this.#setState('closed')
    const error = closedError()
    for (const [name, state] of channels) {
      for (const listener of state.listeners) listener.settleReady(error)
      state.listeners.clear()
      if (!this.#tabs.leading) this.#tabs.toLeader({ t: 'leave', from: this.#tab, c: name })
    }
    this.#tabs.close()
  }

  #receive (message: LeaderMessage, fromLeader: boolean): void {
    switch (message.t) {
      case 'beat': case 'state':
        if (fromLeader) this.#setPollState(message.state)
        break
      case 'ack':
        if (message.to === this.#tab) {
          this.#setPollState(message.state)
          this.#channels.onAck(message.c, message.cursor, message.firstAnswerDue)
        }
        break
      case 'error':
        if (message.from !== this.#tab && fromLeader) this.#failed(asError(message.error))
        break
      case 'reply':
        this.#channels.onReply(message.items)
        break
    }
    this.#channels.checkStuck()
  }

  // Every tab hears of a failure: the leader's own, the others from it. Without the app's onError,
  // it shows on this tab's console, once for each distinct failure.
  #failed (error: Error): void {
    const { onError } = this.#options
    if (onError !== undefined) callSafely(onError, error)
    else this.#warnings.warn(error, this.#base, this.#maxDelay)
    if (isRefusal(error)) this.#channels.refuse(refusedError(error as CometClientError, explainFailure(error, this.#base, this.#maxDelay)))
  }

  #setPollState (state: TransportState): void {
    this.#pollState = state
    if (state === 'connected') this.#warnings.reset()
    this.#refreshState()
  }

  // A tab is connected when the shared poll is and has answered for one of its channels at least.
  #refreshState (): void {
    const poll = this.#pollState
    let state: CometClientState = 'connecting'
    if (this.#channels.size === 0) state = 'idle'
    else if (poll === 'reconnecting' || poll === 'refused') state = poll
    else if (poll === 'connected' && this.#channels.anyAnswered()) state = poll
    this.#setState(state)
  }

  #setState (state: CometClientState): void {
    const previous = this.#state
    if (state === previous) return
    this.#state = state
    callSafely(this.#options.onStateChange, state, previous)
  }

  #assertOpen (): void {
    if (this.#state === 'closed') throw new CometClientError('fastify-comet client: the client is closed; create a new one', 'FST_COMET_CLIENT_CLOSED')
  }
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
  if (!isChannelName(channel)) {
    throw new CometClientError(`fastify-comet client: invalid channel name ${JSON.stringify(channel)}; a channel name has ${channelNameRule}`, 'FST_COMET_INVALID_CHANNEL')
  }
}

const cursorRegExp = new RegExp(cursorPattern)

// A cursor the server gave: fastify.comet.position(), an event's id, or a poll's `p`; not one of
// the words for "now" and "all held", which are not places in a channel.
function assertCursor (after: unknown): void {
  if (typeof after !== 'string' || !cursorRegExp.test(after) || cursorFromNow.includes(after) || after === cursorAllHeld) {
    throw codedTypeError(`fastify-comet client: after must be a cursor the server gave, such as fastify.comet.position(channel) or an event's id: up to 64 characters from A-Z a-z 0-9 _ . ~ - (got ${JSON.stringify(after)}); leave it out to start from now`, 'FST_COMET_INVALID_CURSOR')
  }
}

function codedTypeError (message: string, code: string): TypeError & { code: string } {
  return Object.assign(new TypeError(message), { code })
}
