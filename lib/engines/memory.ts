// The in-memory engine: each channel's recent events in this process, watchers woken synchronously.
import { randomBytes } from 'node:crypto'
import { getHeapStatistics } from 'node:v8'
import type { ChannelBacklog, ChannelWatcher, CometEngine, IdempotentPublish, ReadPosition, StoredEvent } from './engine.js'
import { fromNow, fromOldest } from './engine.js'
import { errors } from '../errors.js'
import { IdempotencyKeys } from './idempotency-keys.js'
import { defaultHistoryChannels, defaultHistorySize, defaultHistoryTtl, defaultIdempotencyKeys, defaultIdempotencyWindow } from './defaults.js'
import { MemoryPresenceStore } from '../presence/memory-store.js'
import type { PresenceStore } from '../presence/store.js'

export interface MemoryEngineOptions {
  /** Events kept per channel. @default 100 */
  historySize?: number | undefined
  /** Seconds an event is kept; `Infinity` keeps it until `historySize` evicts it. @default 300 */
  historyTtl?: number | undefined
  /**
   * Bytes the history of all channels may take, counted as the events' JSON and ids plus a fixed
   * cost per event and per channel. Past it the oldest events of any channel are evicted, and a
   * client that needed them gets a gap. @default a quarter of the heap limit (`defaultHistoryBytes()`)
   */
  historyBytes?: number | undefined
  /**
   * Channels that may hold events at once. Past it the oldest events of any channel are evicted
   * until a channel holds none. @default 100000
   */
  historyChannels?: number | undefined
  /**
   * Seconds an idempotency key is remembered on its channel: a publish repeating it within this
   * window stores nothing and gets the first publish's id. @default 300
   */
  idempotencyWindow?: number | undefined
  /**
   * Idempotency keys remembered at once, across channels; past it, or past `historyBytes` (which
   * counts them), the oldest is forgotten before its window ends. @default 100000
   */
  idempotencyKeys?: number | undefined
  /** The clock, in milliseconds since the Unix epoch; tests pass a fake one. @default Date.now */
  now?: (() => number) | undefined
}

// A place on the engine's timeline. Every event gets a unique one: the millisecond it was published
// and a counter within that millisecond, which starts at 1 so that (ms, 0) can stand for "this
// millisecond, before any event" in a cursor that means "now".
interface Position {
  readonly ms: number
  readonly n: number
}

interface HeldEvent extends StoredEvent, Position {
  readonly channel: Channel
  /** The read of a client caught up with this event, while it is the newest: shared by all such reads. */
  caughtUp: ChannelBacklog | undefined
  /** The next event published after this one, on any channel: the engine-wide list, oldest first. */
  newer: HeldEvent | undefined
  older: HeldEvent | undefined
}

interface Channel {
  readonly name: string
  /** Oldest first. */
  readonly events: HeldEvent[]
  readonly watchers: Set<ChannelWatcher>
  /** Where the timeline was when this channel was created: nothing about it is known from before. */
  readonly created: Position
  /** The newest event no longer held, evicted by size or expired. */
  lostThrough: Position | undefined
}

const noEvents: readonly StoredEvent[] = Object.freeze([])

const cursorPattern = /^([A-Za-z0-9_-]{8})\.([0-9a-z]{1,10})\.([0-9a-z]{1,10})$/

/**
 * What an event costs besides its JSON and id, and what a channel holding events costs besides its
 * events, in bytes of heap: measured with `bench/memory-budget.ts` on Node.js 20 (x64), rounded up.
 */
const eventCost = 270
const channelCost = 560

/**
 * The default `historyBytes`: a quarter of the heap Node.js may grow to (about 1 GiB of a 4 GiB
 * heap, the default on a 64-bit machine with enough memory; `--max-old-space-size` changes it). The
 * rest is left for the replies made from the history (up to `maxReplyBytes` each), the waiting
 * polls and the application.
 */
export function defaultHistoryBytes (): number {
  return Math.floor(getHeapStatistics().heap_size_limit / 4)
}

/**
 * Keeps each channel's recent events in process memory and wakes watchers synchronously on
 * publish. Cursors carry a random id of this engine instance, so a cursor from before a restart is
 * recognised and answered with a gap, never with silence.
 */
export class MemoryEngine implements CometEngine {
  readonly #channels = new Map<string, Channel>()
  readonly #historySize: number
  readonly #historyTtlMs: number
  readonly #historyBytes: number
  readonly #historyChannels: number
  /** Every held event, in publish order: the oldest is the first to evict, in O(1). */
  #oldest: HeldEvent | undefined
  #newest: HeldEvent | undefined
  /** Bytes held, as historyBytes counts them. */
  #bytes = 0
  /** Channels holding at least one event. */
  #holding = 0
  /**
   * The newest event lost (evicted or expired) by each channel that was dropped since, so that a
   * client coming back to it is told; the oldest entries are forgotten past historyChannels, into
   * #forgottenLoss.
   */
  readonly #lostByDropped = new Map<string, Position>()
  /** The newest loss forgotten from #lostByDropped: a cursor before it, on a channel created since, gets a gap. */
  #forgottenLoss: Position | undefined
  readonly #now: () => number
  readonly #instanceId = randomBytes(6).toString('base64url')
  readonly #sweepTimer: NodeJS.Timeout
  /** How long the newest event of a channel serves as its cursor at "now": see #head. */
  readonly #youngMs: number
  /** Idempotency keys within their window; their bytes count in historyBytes. */
  readonly #idempotencyKeys: IdempotencyKeys
  #clockMs = 0
  /** The cursor at "now" last made, after every event so far: polls share it until the clock or the timeline moves. */
  #nowCursor = { ms: -1, n: 0, cursor: '' }
  #last: Position = { ms: 0, n: 0 }
  #closed = false

  constructor (options: MemoryEngineOptions = {}) {
    const {
      historySize = defaultHistorySize,
      historyTtl = defaultHistoryTtl,
      historyBytes = defaultHistoryBytes(),
      historyChannels = defaultHistoryChannels,
      idempotencyWindow = defaultIdempotencyWindow,
      idempotencyKeys = defaultIdempotencyKeys,
      now = Date.now
    } = options
    this.#historySize = historySize
    this.#historyTtlMs = historyTtl * 1000
    this.#historyBytes = historyBytes
    this.#historyChannels = historyChannels
    this.#idempotencyKeys = new IdempotencyKeys(idempotencyWindow * 1000, idempotencyKeys)
    this.#youngMs = Math.min(1000, this.#historyTtlMs / 100)
    this.#now = now
    // Expired events are also trimmed on every read, and expired keys on every keyed publish; the
    // sweep is what drops idle channels, and the keys of a channel no longer published on.
    this.#sweepTimer = setInterval(() => this.#sweep(), Math.min(this.#historyTtlMs, idempotencyWindow * 1000, 60_000)).unref()
  }

  async publish (channel: string, json: string): Promise<string> {
    if (this.#closed) throw new errors.FST_COMET_CLOSED()
    const event = this.#append(channel, json)
    this.#withinBudgets(event)
    this.#notify(event.channel)
    return event.id
  }

  async publishIdempotent (channel: string, json: string, idempotencyKey: string): Promise<IdempotentPublish> {
    if (this.#closed) throw new errors.FST_COMET_CLOSED()
    const lookup = this.#idempotencyKeys.find(channel, idempotencyKey, json, this.#tick())
    if (lookup.known) {
      if (!lookup.sameData) throw new errors.FST_COMET_IDEMPOTENCY_KEY_REUSED(JSON.stringify(idempotencyKey), channel)
      return { id: lookup.id, replayed: true }
    }
    const event = this.#append(channel, json)
    // Remembered before any watcher hears of the event, so that nothing it does can publish it twice.
    this.#idempotencyKeys.remember(lookup, event)
    this.#withinBudgets(event)
    this.#notify(event.channel)
    return { id: event.id, replayed: false }
  }

  /** Stores an event, without a look at the budgets and without telling its watchers. */
  #append (channel: string, json: string): HeldEvent {
    const ms = this.#tick()
    const position = { ms, n: ms === this.#last.ms ? this.#last.n + 1 : 1 }
    this.#last = position
    const held = this.#channelFor(channel)
    this.#trimExpired(held, ms)
    const event: HeldEvent = { id: this.#cursor(position), json, ms: position.ms, n: position.n, channel: held, caughtUp: undefined, newer: undefined, older: this.#newest }
    if (held.events.length === 0) {
      this.#holding++
      this.#bytes += channelCost
    }
    held.events.push(event)
    if (this.#newest === undefined) this.#oldest = event
    else this.#newest.newer = event
    this.#newest = event
    this.#bytes += eventBytes(event)
    if (held.events.length > this.#historySize) this.#forget(held, 1)
    return event
  }

  // The budgets evict the oldest events of any channel and the oldest idempotency keys, whichever
  // is older first (a key is as old as its event): a key forgotten early lets a late retry publish
  // again, an event evicted early gives a gap, and the older is the least likely to be needed. The
  // new event and its key go last, and stay even alone over the budget, as a publish never fails.
  #withinBudgets (newest: HeldEvent): void {
    while (this.#bytes + this.#idempotencyKeys.bytes > this.#historyBytes || this.#holding > this.#historyChannels) {
      const oldest = this.#oldest as HeldEvent
      const key = this.#holding > this.#historyChannels ? undefined : this.#idempotencyKeys.oldest()
      if (key !== undefined && compare(key, newest) < 0 && (oldest === newest || compare(key, oldest) < 0)) this.#idempotencyKeys.forgetOldest()
      else if (oldest !== newest) this.#evictOldest()
      else return
    }
  }

  #notify (held: Channel): void {
    // A watcher usually unwatches itself while notified; a Set visits each remaining member once.
    for (const watcher of held.watchers) watcher.notify(held.name)
  }

  read (channel: string, position: ReadPosition, limit: number): ChannelBacklog {
    const ms = this.#tick()
    const held = this.#channels.get(channel)
    if (held !== undefined) this.#trimExpired(held, ms)
    const events = held?.events ?? []

    if (position === fromNow) return { events: [], next: this.#head(held, ms), gap: false }
    if (position === fromOldest) return this.#backlog(held, events, 0, limit, false, ms)

    // The usual cursor, from a client polling again: the newest event, the last it received. Nothing
    // comes after it and nothing before it can be lost, so no need to parse it.
    const newest = events[events.length - 1]
    if (newest !== undefined && position === newest.id) {
      // Every poll woken by a publish comes back here: while its "now" is the newest event
      // (#head), they all get one read, made once.
      if (this.#isNow(newest, ms)) return newest.caughtUp ??= { events: noEvents, next: newest.id, gap: false }
      return this.#backlog(held, events, events.length, limit, false, ms)
    }
    const after = this.#parseCursor(channel, position)
    if (after === undefined || after.ms > ms) {
      // Another instance's cursor (a restart) or one this instance never gave: what it missed is unknown.
      return this.#backlog(held, events, 0, limit, true, ms)
    }
    let start = events.length
    while (start > 0 && compare(events[start - 1] as HeldEvent, after) > 0) start--
    return this.#backlog(held, events, start, limit, this.#lostAfter(channel, held, after, ms), ms)
  }

  watch (channel: string, watcher: ChannelWatcher): void {
    this.#channelFor(channel).watchers.add(watcher)
  }

  unwatch (channel: string, watcher: ChannelWatcher): void {
    const held = this.#channels.get(channel)
    if (held === undefined) return
    held.watchers.delete(watcher)
    this.#dropIfIdle(channel, held)
  }

  channelCount (): number {
    return this.#channels.size
  }

  async close (): Promise<void> {
    this.#closed = true
    clearInterval(this.#sweepTimer)
    this.#channels.clear()
    this.#lostByDropped.clear()
    this.#idempotencyKeys.clear()
    this.#oldest = this.#newest = undefined
    this.#bytes = this.#holding = 0
  }

  /** Members of channels in this process, on this engine's clock: see lib/presence/memory-store.ts. */
  presenceStore (): PresenceStore {
    return new MemoryPresenceStore(this, this.#now)
  }

  /** Bytes held as `historyBytes` counts them, channels holding events, and idempotency keys remembered: for tests and measurements. */
  historyUsage (): { bytes: number, channels: number, idempotencyKeys: number } {
    return { bytes: this.#bytes + this.#idempotencyKeys.bytes, channels: this.#holding, idempotencyKeys: this.#idempotencyKeys.size }
  }

  #backlog (held: Channel | undefined, events: HeldEvent[], start: number, limit: number, gap: boolean, ms: number): ChannelBacklog {
    const batch = events.slice(start, start + limit)
    const last = batch[batch.length - 1]
    return { events: batch, next: last === undefined ? this.#head(held, ms) : last.id, gap }
  }

  // Could an event after `after` have existed on this channel and be gone now?
  #lostAfter (channel: string, held: Channel | undefined, after: Position, ms: number): boolean {
    // A channel dropped since its last loss is remembered by name, until it is created again.
    const lostThrough = held === undefined ? this.#lostByDropped.get(channel) : held.lostThrough
    if (lostThrough !== undefined && compare(after, lostThrough) < 0) return true
    // Before the channel was created here, it was either never used or dropped once it held
    // nothing: all its events had expired, or the budgets evicted them. An expired event after
    // `after` is at least as young as the cursor, so it can only be gone if the cursor is older
    // than historyTtl. An evicted one is remembered above, unless its channel's name was forgotten:
    // then only a cursor from after every forgotten loss is safe.
    const created = held?.created
    if (created !== undefined && compare(after, created) >= 0) return false
    if (this.#forgottenLoss !== undefined && compare(after, this.#forgottenLoss) < 0) return true
    return (created?.ms ?? ms) - after.ms >= this.#historyTtlMs
  }

  /** Whether a channel's newest event is young enough to serve as its cursor at "now" (see #head). */
  #isNow (newest: HeldEvent, ms: number): boolean {
    return ms - newest.ms < this.#youngMs
  }

  // A cursor that every later event of the channel comes after, and no held or lost one does.
  #head (held: Channel | undefined, ms: number): string {
    // The newest event while it is young: the polls woken by one publish poll again from its id,
    // and they then all wait at that one cursor, so that the next publish wakes them with one read
    // and one reply, not one per millisecond they came back in. Older than that, a cursor at "now"
    // says how recently the client was told that nothing more was lost, which a channel dropped
    // and created again relies on (#lostAfter).
    const newest = held?.events[held.events.length - 1]
    if (newest !== undefined && this.#isNow(newest, ms)) return newest.id
    // After every event so far, of any channel: one evicted in this very millisecond must not come
    // after "now", or its gap would be told again.
    const n = this.#last.ms === ms ? this.#last.n : 0
    if (this.#nowCursor.ms !== ms || this.#nowCursor.n !== n) this.#nowCursor = { ms, n, cursor: this.#cursor({ ms, n }) }
    return this.#nowCursor.cursor
  }


  #channelFor (channel: string): Channel {
    let held = this.#channels.get(channel)
    if (held === undefined) {
      const ms = this.#tick()
      const lostThrough = this.#lostByDropped.get(channel)
      if (lostThrough !== undefined) this.#lostByDropped.delete(channel)
      held = { name: channel, events: [], watchers: new Set(), created: this.#last.ms === ms ? this.#last : { ms, n: 0 }, lostThrough }
      this.#channels.set(channel, held)
    }
    return held
  }

  #trimExpired (held: Channel, ms: number): void {
    const events = held.events
    let expired = 0
    while (expired < events.length && ms - (events[expired] as HeldEvent).ms >= this.#historyTtlMs) expired++
    if (expired > 0) this.#forget(held, expired)
  }

  #evictOldest (): void {
    const held = (this.#oldest as HeldEvent).channel
    // Events enter the engine-wide list in publish order, and leave a channel oldest first: the
    // oldest of all is the oldest of its channel.
    this.#forget(held, 1)
    this.#dropIfIdle(held.name, held)
  }

  /** Removes a channel's `count` oldest events, and remembers the newest of them as lost. */
  #forget (held: Channel, count: number): void {
    const removed = held.events.splice(0, count)
    for (const event of removed) {
      if (event.older === undefined) this.#oldest = event.newer
      else event.older.newer = event.newer
      if (event.newer === undefined) this.#newest = event.older
      else event.newer.older = event.older
      this.#bytes -= eventBytes(event)
    }
    // Its place only: the event itself, with its data, must be free to go.
    const newestLost = removed[count - 1] as HeldEvent
    held.lostThrough = { ms: newestLost.ms, n: newestLost.n }
    if (held.events.length === 0) {
      this.#holding--
      this.#bytes -= channelCost
    }
  }

  #dropIfIdle (channel: string, held: Channel): void {
    if (held.watchers.size !== 0 || held.events.length !== 0) return
    this.#channels.delete(channel)
    if (held.lostThrough === undefined) return
    this.#lostByDropped.set(channel, held.lostThrough)
    if (this.#lostByDropped.size > this.#historyChannels) {
      const [forgotten, lostThrough] = this.#lostByDropped.entries().next().value as [string, Position]
      this.#lostByDropped.delete(forgotten)
      if (this.#forgottenLoss === undefined || compare(lostThrough, this.#forgottenLoss) > 0) this.#forgottenLoss = lostThrough
    }
  }

  #sweep (): void {
    const ms = this.#tick()
    this.#idempotencyKeys.forgetExpired(ms)
    for (const [channel, held] of this.#channels) {
      this.#trimExpired(held, ms)
      this.#dropIfIdle(channel, held)
    }
    // A cursor before a loss older than historyTtl gets a gap by its age alone.
    for (const [channel, lostThrough] of this.#lostByDropped) {
      if (ms - lostThrough.ms >= this.#historyTtlMs) this.#lostByDropped.delete(channel)
    }
  }

  // The clock never goes back, so positions stay ordered even when the system clock is set back.
  #tick (): number {
    this.#clockMs = Math.max(this.#clockMs, this.#now())
    return this.#clockMs
  }

  #cursor (position: Position): string {
    return `${this.#instanceId}.${position.ms.toString(36)}.${position.n.toString(36)}`
  }

  /** Undefined for a well-formed cursor of another engine instance. */
  #parseCursor (channel: string, cursor: string): Position | undefined {
    const parts = cursorPattern.exec(cursor)
    if (parts === null) throw new errors.FST_COMET_INVALID_CURSOR(JSON.stringify(channel))
    const [, instanceId, ms, n] = parts as unknown as [string, string, string, string]
    if (instanceId !== this.#instanceId) return undefined
    return { ms: parseInt(ms, 36), n: parseInt(n, 36) }
  }
}

function eventBytes (event: HeldEvent): number {
  return event.json.length + event.id.length + eventCost
}

function compare (a: Position, b: Position): number {
  return a.ms - b.ms || a.n - b.n
}
