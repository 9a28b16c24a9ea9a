// The types an app meets: the client's options, states, events and subscriptions.

export type CometClientState =
  /** No channel is subscribed: no request is made. */
  | 'idle'
  /** The first poll has not been answered yet. */
  | 'connecting'
  /** The last poll was answered: from the cursors held, nothing can be missed. */
  | 'connected'
  /** The last poll failed; the next one is scheduled with backoff. */
  | 'reconnecting'
  /**
   * The server refuses the polls, and asking again soon will not change that: a 404 (no
   * fastify-comet at `url`: is it the plugin's prefix?), a 403 (the plugin's authorizeSubscribe said
   * no), or another 4xx but 408 and 429. Subscriptions not yet ready reject with
   * `FST_COMET_CLIENT_REFUSED`; the client still asks again every `retry.maxDelay` ms, and is
   * `connected` as soon as the server answers.
   */
  | 'refused'
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
  /**
   * A poll failed; the client retries by itself. Without onError, the client warns on the console
   * (console.warn) once for each distinct failure, saying what to check, until the server answers
   * again.
   */
  onError?: (error: Error) => void
}

export interface CometSubscribeOptions {
  /** Deliver the events the server still holds for the channel first (recent chat lines, say). */
  history?: boolean
  /**
   * Deliver every event after this cursor (what `fastify.comet.position(channel)` gave the page it
   * rendered, or the id of the last event it shows), then what comes; or call `onGap` if the
   * server no longer holds them all. Not with `history`, and only on a channel's first
   * subscription in a client.
   */
  after?: string
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

