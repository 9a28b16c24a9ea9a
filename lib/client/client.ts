// The client, for browsers and Node.js: one long-poll at a time for every channel subscribed, with
// the cursors kept here, so that nothing is lost or repeated across timeouts, reconnects and
// changes of channels. It needs only fetch and AbortController.
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

interface ChannelState {
  /** '0' (from now) or 'all' (what is held) until the server gives a cursor. */
  cursor: string
  confirmed: boolean
  readonly listeners: Set<Listener>
}

interface PollReply {
  s: 0 | 1
  m?: Record<string, Array<{ id: string, data: unknown }>>
  p: Record<string, string>
  gap?: string[]
}

/** The same rule as the server's: characters that need no escaping in a URL or JSON. */
const channelNameRegExp = /^[A-Za-z0-9_.:@-]{1,128}$/

// A waiting poll answered with nothing faster than this is a server that will not wait (one that is
// closing, say): back off, rather than ask again at once, again and again.
const quickEmptyAnswerMs = 100

const defaultRetry = { initialDelay: 500, maxDelay: 10_000 }

export class CometClient {
  readonly #base: URL
  readonly #fetch: typeof fetch
  readonly #retry: Required<CometRetryOptions>
  readonly #options: CometClientOptions
  readonly #channels = new Map<string, ChannelState>()
  #state: CometClientState = 'idle'
  #running = false
  /** Aborts the poll in flight. */
  #inFlight: AbortController | undefined
  /** Ends the backoff wait early. */
  #wakeUp: (() => void) | undefined
  /** Failures in a row. */
  #failures = 0

  constructor (options: CometClientOptions = {}) {
    const { url = '/comet', fetch: fetchFunction, retry = {} } = options
    this.#options = options
    this.#base = resolveBase(url)
    this.#fetch = fetchFunction ?? ((input, init) => globalThis.fetch(input, init))
    this.#retry = { ...defaultRetry, ...retry }
    for (const [name, value] of Object.entries(this.#retry)) {
      if (!(typeof value === 'number' && value >= 0 && value < Infinity)) {
        throw new TypeError(`fastify-comet client: retry.${name} must be a number of milliseconds (got ${String(value)})`)
      }
    }
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
      state = { cursor: history ? 'all' : '0', confirmed: false, listeners: new Set() }
      this.#channels.set(channel, state)
      this.#restartPoll()
    } else if (history && !state.confirmed) {
      state.cursor = 'all'
    }
    state.listeners.add(listener)
    if (state.confirmed) settleReady()

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
    this.#restartPoll()
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
    const channels = [...this.#channels.values()]
    this.#channels.clear()
    this.#setState('closed')
    this.#inFlight?.abort()
    this.#wakeUp?.()
    const error = new CometClientError('fastify-comet client: closed before the subscription was ready', 'FST_COMET_CLIENT_CLOSED')
    for (const state of channels) {
      for (const listener of state.listeners) listener.settleReady(error)
      state.listeners.clear()
    }
  }

  // The set of channels changed: the poll in flight asks for the wrong ones. Aborting it loses
  // nothing: cursors move only when an answer is handled, so the next poll asks again from them.
  #restartPoll (): void {
    this.#inFlight?.abort()
    if (this.#running) return
    this.#running = true
    // After the current task, so that several subscribes in a row make one poll.
    queueMicrotask(() => { void this.#pollLoop() })
  }

  async #pollLoop (): Promise<void> {
    try {
      while (this.#state !== 'closed' && this.#channels.size > 0) {
        if (this.#state === 'idle') this.#setState('connecting')
        await this.#pollOnce()
      }
    } finally {
      this.#running = false
    }
    if (this.#state !== 'closed') this.#setState('idle')
  }

  async #pollOnce (): Promise<void> {
    const channels = [...this.#channels]
    // Until the server has answered for every channel, and after a failure, it answers at once.
    const wait = this.#state === 'connected' && channels.every(([, state]) => state.confirmed)
    const query = channels.map(([name, state]) => `${encodeURIComponent(`subscribed[${name}]`)}=${encodeURIComponent(state.cursor)}`)
    if (!wait) query.push('wait=0')
    const url = new URL(`subscribe?${query.join('&')}`, this.#base)

    const controller = new AbortController()
    this.#inFlight = controller
    const started = Date.now()
    let reply: PollReply | undefined
    let failure: unknown
    try {
      const response = await this.#fetch(url, { signal: controller.signal, headers: { accept: 'application/json' } })
      if (!response.ok) throw await errorOf(response)
      reply = asPollReply(await response.json())
    } catch (error) {
      failure = error
    } finally {
      this.#inFlight = undefined
    }
    // Aborted for a change of channels, or by close(), perhaps after the answer was read: the
    // next poll asks again from the same cursors, or the loop ends.
    if (controller.signal.aborted) return

    if (reply === undefined) {
      this.#failures++
      this.#setState('reconnecting')
      this.#call(this.#options.onError, failure as Error)
      return await this.#backOff(failure)
    }
    const quickEmptyAnswer = wait && reply.s === 0 && Date.now() - started < quickEmptyAnswerMs
    this.#failures = quickEmptyAnswer ? this.#failures + 1 : 0
    this.#setState('connected')
    this.#deliver(reply)
    if (quickEmptyAnswer) await this.#backOff(undefined)
  }

  #deliver (reply: PollReply): void {
    if (reply.gap !== undefined && reply.gap.length > 0) this.#call(this.#options.onGap, reply.gap)
    for (const [channel, cursor] of Object.entries(reply.p)) {
      const state = this.#channels.get(channel)
      // Left by a listener of a channel delivered before it.
      if (state === undefined) continue
      state.cursor = cursor
      for (const event of reply.m?.[channel] ?? []) {
        // A listener may unsubscribe (or close the client): those removed are not called again.
        for (const listener of state.listeners) this.#call(listener.onEvent, event.data, { channel, id: event.id })
      }
      if (!state.confirmed) {
        state.confirmed = true
        for (const listener of state.listeners) listener.settleReady()
      }
    }
  }

  // Exponential backoff with full jitter; a Retry-After is a floor, a 4xx other than 408/429 waits
  // the longest. A browser coming back online retries at once.
  async #backOff (error: unknown): Promise<void> {
    const { initialDelay, maxDelay } = this.#retry
    const ceiling = Math.min(maxDelay, initialDelay * 2 ** (this.#failures - 1))
    let delay = Math.random() * ceiling
    if (error instanceof CometClientError) {
      if (isClientError(error.statusCode)) delay = maxDelay
      if (error.retryAfter !== undefined) delay = Math.max(delay, error.retryAfter * 1000)
    }
    if (this.#state === 'closed') return
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
    try {
      callback?.(...args)
    } catch (error) {
      queueMicrotask(() => { throw error })
    }
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
