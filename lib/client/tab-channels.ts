// The channels as one tab holds them: listeners, the cursor after what was delivered, the events
// seen. Each answer of the shared poll is placed after what the tab has, so that nothing reaches a
// listener twice or out of order, whichever tab leads and however the answers cross.
import { cursorAllHeld } from '../protocol/wire-format.js'
import { sleep } from './backoff.js'
import { callSafely } from './call-safely.js'
import type { Batch, MemberMessage, TabHead } from './messages.js'
import type { CometClientOptions, CometListener } from './types.js'
import type { CometClientError } from './errors.js'
import { pollReplyOf, subscribeUrl, type WireEvent } from './wire.js'

/** An answer that a tab could not place (its start is not a cursor the tab has passed) for this long means the tab fell behind: it asks the leader to poll from its own cursor. */
const stuckMs = 2000
/** Cursors and event ids a tab remembers per channel, to recognise answers and repeats. */
const seenLimit = 1000
/** Requests a tab makes at most to read a channel's history. */
const historyRequests = 20

export interface Listener {
  readonly onEvent: CometListener
  readonly settleReady: (error?: CometClientError) => void
}

/** One channel as a tab holds it. */
export interface TabChannel {
  /** The cursor after the last event delivered; undefined until the channel's first answer. */
  head: string | undefined
  /** The held history was asked for. */
  history: boolean
  /** The cursor (from the server's position()) whose later events were asked for, if any. */
  readonly after: string | undefined
  /** Cursors passed and event ids delivered, oldest first. */
  readonly seen: Set<string>
  readonly listeners: Set<Listener>
  /** Answers that start at a cursor this tab has not passed (yet), with when they came. */
  buffered: Array<{ batch: Batch, at: number }>
  lastNeed: number
  /** While the history is read: the events that came meanwhile, delivered after it. */
  loading: WireEvent[] | undefined
  /**
   * For a tab that starts after a cursor: that cursor, and after a read from it that the shared
   * poll had not caught up with, the ids of the events read. An answer that has an event of one of
   * these ids is behind (the shared poll was): what it has up to that one is not new.
   */
  behindMarks: Set<string> | undefined
  ready: boolean
}

export interface TabChannelsOptions {
  tab: string
  fetch: typeof fetch
  base: URL
  initialDelay: number
  /** The app's onGap, read when called. */
  callbacks: CometClientOptions
  /** A request of this tab's own failed. */
  onError: (error: Error) => void
  toLeader: (message: MemberMessage) => void
  /** An answer was placed: the client's state may change. */
  onAnswer: () => void
}

export class TabChannels {
  readonly #options: TabChannelsOptions
  readonly #channels = new Map<string, TabChannel>()

  constructor (options: TabChannelsOptions) {
    this.#options = options
  }

  get size (): number {
    return this.#channels.size
  }

  get (name: string): TabChannel | undefined {
    return this.#channels.get(name)
  }

  add (name: string, start: { history: boolean, after: string | undefined }, listener: Listener): TabChannel {
    const { history, after } = start
    // A tab that starts after a cursor places an answer from that cursor as its first.
    const seen = new Set(after === undefined ? [] : [after])
    const state: TabChannel = { head: undefined, history, after, seen, listeners: new Set([listener]), buffered: [], lastNeed: 0, loading: undefined, behindMarks: after === undefined ? undefined : new Set([after]), ready: false }
    this.#channels.set(name, state)
    return state
  }

  delete (name: string): void {
    this.#channels.delete(name)
  }

  /** Forgets every channel; returns them. */
  clear (): Array<[string, TabChannel]> {
    const channels = [...this.#channels]
    this.#channels.clear()
    return channels
  }

  /** Each channel with its cursor: what this tab tells a new leader. */
  heads (): TabHead[] {
    return [...this.#channels].map(([c, state]) => ({ c, cursor: state.head, history: state.history, after: state.after }))
  }

  /** The server refuses the polls: every subscription not yet ready rejects with `error`. */
  refuse (error: CometClientError): void {
    for (const state of this.#channels.values()) {
      if (state.ready) continue
      for (const listener of state.listeners) listener.settleReady(error)
    }
  }

  /** The shared poll has answered for one of this tab's channels at least. */
  anyAnswered (): boolean {
    return [...this.#channels.values()].some(channel => channel.head !== undefined)
  }


  onAck (name: string, cursor: string | null, firstAnswerDue: boolean): void {
    const state = this.#channels.get(name)
    if (state === undefined || state.head !== undefined || cursor === null) return
    if (cursor === state.after) {
      // The poll asks from this tab's start: its answer is this tab's first. Or the poll is there
      // already: this tab is in step with it.
      if (firstAnswerDue) return
      state.head = cursor
      state.buffered = []
      this.#markReady(state)
      this.#options.onAnswer()
      return
    }
    // The channel was polled already, for other tabs: this one follows from its cursor on, and
    // what came before belongs to before it joined (or is read on its own, from its start).
    state.head = cursor
    state.buffered = []
    remember(state, cursor)
    if (state.history || state.after !== undefined) {
      void this.#readHistory(name, state, state.after ?? cursorAllHeld)
    } else {
      this.#markReady(state)
    }
    this.#options.onAnswer()
  }

  onReply (batches: readonly Batch[]): void {
    const gaps: string[] = []
    const placed: Array<[string, TabChannel, WireEvent[]]> = []
    for (const batch of batches) {
      const state = this.#channels.get(batch.c)
      // A first answer for a tab that has had its own already (another leader's, around a takeover).
      if (state === undefined || (batch.from === null && state.head !== undefined)) continue
      // The channel's first answer, from a start of another tab's: this tab reads from its own
      // start on its own, and takes the answer's cursor as an ack (its events are in that read).
      if (batch.from === null && state.after !== undefined) {
        this.onAck(batch.c, batch.p, false)
        continue
      }
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
    this.#options.onAnswer()
    if (gaps.length > 0) callSafely(this.#options.callbacks.onGap, gaps)
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
      if (batch.gap) callSafely(this.#options.callbacks.onGap, [name])
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
      for (const listener of state.listeners) callSafely(listener.onEvent, event.data, { channel: name, id: event.id })
    }
  }

  #markReady (state: TabChannel): void {
    if (state.ready || state.head === undefined || state.loading !== undefined) return
    state.ready = true
    for (const listener of state.listeners) listener.settleReady()
  }

  // This tab fell behind the shared poll (answers it cannot place, for a while): the leader polls
  // once more from this tab's cursor; the tabs that had those events already skip them.
  checkStuck (): void {
    const now = Date.now()
    for (const [name, state] of this.#channels) {
      const stale = state.buffered.filter(({ at }) => now - at > stuckMs)
      if (stale.length === 0 || state.head === undefined || now - state.lastNeed < stuckMs) continue
      state.buffered = state.buffered.filter(entry => !stale.includes(entry))
      state.lastNeed = now
      this.#options.toLeader({ t: 'need', from: this.#options.tab, c: name, cursor: state.head })
    }
  }

  // A tab joining a channel that the shared poll has had for a while reads the held history (or
  // what came after its `after`) on its own, then delivers what the shared poll brought meanwhile,
  // less the events the read had.
  async #readHistory (name: string, state: TabChannel, start: string): Promise<void> {
    state.loading = []
    const held: WireEvent[] = []
    let cursor = start
    let complete = false
    let gap = false
    for (let request = 0, failures = 0; request < historyRequests && failures < 3 && !complete; request++) {
      try {
        const url = subscribeUrl(this.#options.base, [{ name, cursor }], false)
        const response = await this.#options.fetch(url, { headers: { accept: 'application/json' } })
        const reply = await pollReplyOf(response)
        const events = reply.m?.[name] ?? []
        if (reply.gap?.includes(name) === true) gap = true
        held.push(...events)
        cursor = reply.p[name] as string
        complete = events.length === 0
      } catch (error) {
        failures++
        this.#options.onError(error as Error)
        await sleep(Math.random() * this.#options.initialDelay * 2 ** failures)
      }
      if (this.#channels.get(name) !== state) return
    }
    let meanwhile = state.loading
    state.loading = undefined
    // The history could not be read whole, or lost events after `after`: the page reloads what it
    // shows some other way.
    if (!complete || gap) callSafely(this.#options.callbacks.onGap, [name])
    // The read has every event after its start up to its last: of what the shared poll brought
    // meanwhile, in order, those up to the last the read had too are either in the read or from
    // before the start (the shared poll was behind `after`); only those after it are new.
    const heldIds = new Set(held.map(event => event.id))
    const marks = new Set([start, ...heldIds])
    const lastShared = lastMarked(meanwhile, marks)
    meanwhile = meanwhile.slice(lastShared + 1)
    // No sign yet that the shared poll got past `after`: its answers still may be behind.
    if (lastShared === -1 && state.behindMarks !== undefined) state.behindMarks = marks
    this.#deliver(name, state, held)
    this.#deliver(name, state, meanwhile)
    for (const id of heldIds) remember(state, id)
    this.#markReady(state)
  }
}

/**
 * Where `batch` fits in what the tab has: undefined when its start is not a cursor the tab has
 * passed (it came early, or belongs to before the tab joined), else the events the tab has not had,
 * in order. The tab's cursor moves past them.
 */
function place (state: TabChannel, batch: Batch): WireEvent[] | undefined {
  if (batch.from === null ? state.head !== undefined : !state.seen.has(batch.from)) return undefined
  let events = batch.m
  if (state.behindMarks !== undefined) {
    const lastMark = lastMarked(events, state.behindMarks)
    if (lastMark !== -1) {
      events = events.slice(lastMark + 1)
      state.behindMarks = undefined
    }
  }
  const fresh = events.filter(event => !state.seen.has(event.id))
  for (const event of fresh) remember(state, event.id)
  // With no new event, only an answer from the tab's own cursor moves it: an older one could move it back.
  if (fresh.length > 0 || batch.from === (state.head ?? state.after ?? null)) state.head = batch.p
  remember(state, batch.p)
  return fresh
}

/** The index of the last of `events` whose id is one of `marks`, or -1. */
function lastMarked (events: readonly WireEvent[], marks: ReadonlySet<string>): number {
  let index = events.length - 1
  while (index >= 0 && !marks.has((events[index] as WireEvent).id)) index--
  return index
}

function remember (state: TabChannel, cursor: string): void {
  state.seen.delete(cursor)
  state.seen.add(cursor)
  if (state.seen.size > seenLimit) state.seen.delete(state.seen.values().next().value as string)
}
