// The in-memory engine: each channel's recent events in this process, watchers woken synchronously.
import { randomBytes } from 'node:crypto'
import type { ChannelBacklog, ChannelWatcher, CometEngine, ReadPosition, StoredEvent } from './engine.js'
import { fromNow, fromOldest } from './engine.js'
import { errors } from '../errors.js'
import { defaultHistorySize, defaultHistoryTtl } from '../options.js'

export interface MemoryEngineOptions {
  /** Events kept per channel. @default 100 */
  historySize?: number | undefined
  /** Seconds an event is kept; `Infinity` keeps it until `historySize` evicts it. @default 300 */
  historyTtl?: number | undefined
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

interface HeldEvent extends StoredEvent, Position {}

interface Channel {
  /** Oldest first. */
  readonly events: HeldEvent[]
  readonly watchers: Set<ChannelWatcher>
  /** Where the timeline was when this channel was created: nothing about it is known from before. */
  readonly created: Position
  /** The newest event no longer held, evicted by size or expired. */
  lostThrough: Position | undefined
}

const cursorPattern = /^([A-Za-z0-9_-]{8})\.([0-9a-z]{1,10})\.([0-9a-z]{1,10})$/

/**
 * Keeps each channel's recent events in process memory and wakes watchers synchronously on
 * publish. Cursors carry a random id of this engine instance, so a cursor from before a restart is
 * recognised and answered with a gap, never with silence.
 */
export class MemoryEngine implements CometEngine {
  readonly #channels = new Map<string, Channel>()
  readonly #historySize: number
  readonly #historyTtlMs: number
  readonly #now: () => number
  readonly #instanceId = randomBytes(6).toString('base64url')
  readonly #sweepTimer: NodeJS.Timeout | undefined
  #clockMs = 0
  /** The cursor at "now" of the last millisecond one was made for: polls in one millisecond share it. */
  #nowCursor = { ms: -1, cursor: '' }
  #last: Position = { ms: 0, n: 0 }
  #closed = false

  constructor (options: MemoryEngineOptions = {}) {
    const { historySize = defaultHistorySize, historyTtl = defaultHistoryTtl, now = Date.now } = options
    this.#historySize = historySize
    this.#historyTtlMs = historyTtl * 1000
    this.#now = now
    if (Number.isFinite(this.#historyTtlMs)) {
      // Expired events are also trimmed on every read; the sweep is what drops idle channels.
      this.#sweepTimer = setInterval(() => this.#sweep(), Math.min(this.#historyTtlMs, 60_000)).unref()
    }
  }

  async publish (channel: string, json: string): Promise<string> {
    if (this.#closed) throw new errors.FST_COMET_CLOSED()
    const ms = this.#tick()
    const position = { ms, n: ms === this.#last.ms ? this.#last.n + 1 : 1 }
    this.#last = position
    const held = this.#channelFor(channel)
    this.#trimExpired(held, ms)
    const event: HeldEvent = { id: this.#cursor(position), json, ms: position.ms, n: position.n }
    held.events.push(event)
    if (held.events.length > this.#historySize) held.lostThrough = held.events.shift()
    // A watcher usually unwatches itself while notified; a Set visits each remaining member once.
    for (const watcher of held.watchers) watcher.notify(channel)
    return event.id
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
    if (position === events[events.length - 1]?.id) return this.#backlog(held, events, events.length, limit, false, ms)
    const after = this.#parseCursor(channel, position)
    if (after === undefined || after.ms > ms) {
      // Another instance's cursor (a restart) or one this instance never gave: what it missed is unknown.
      return this.#backlog(held, events, 0, limit, true, ms)
    }
    let start = events.length
    while (start > 0 && compare(events[start - 1] as HeldEvent, after) > 0) start--
    return this.#backlog(held, events, start, limit, this.#lostAfter(held, after, ms), ms)
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
  }

  #backlog (held: Channel | undefined, events: HeldEvent[], start: number, limit: number, gap: boolean, ms: number): ChannelBacklog {
    const batch = events.slice(start, start + limit)
    const last = batch[batch.length - 1]
    return { events: batch, next: last === undefined ? this.#head(held, ms) : last.id, gap }
  }

  // Could an event after `after` have existed on this channel and be gone now?
  #lostAfter (held: Channel | undefined, after: Position, ms: number): boolean {
    if (held?.lostThrough !== undefined && compare(after, held.lostThrough) < 0) return true
    // Before the channel was created here, it was either never used or dropped once all its events
    // had expired. An event after `after` is at least as young as the cursor, so it can only have
    // expired if the cursor is older than historyTtl: only then can something have been lost.
    const created = held?.created ?? { ms, n: 0 }
    return compare(after, created) < 0 && created.ms - after.ms >= this.#historyTtlMs
  }

  // A cursor that every later event of the channel comes after, and no held one does.
  #head (held: Channel | undefined, ms: number): string {
    const newest = held?.events[held.events.length - 1]
    if (newest !== undefined && newest.ms === ms) return newest.id
    if (this.#nowCursor.ms !== ms) this.#nowCursor = { ms, cursor: this.#cursor({ ms, n: 0 }) }
    return this.#nowCursor.cursor
  }

  #channelFor (channel: string): Channel {
    let held = this.#channels.get(channel)
    if (held === undefined) {
      const ms = this.#tick()
      held = { events: [], watchers: new Set(), created: this.#last.ms === ms ? this.#last : { ms, n: 0 }, lostThrough: undefined }
      this.#channels.set(channel, held)
    }
    return held
  }

  #trimExpired (held: Channel, ms: number): void {
    const events = held.events
    let expired = 0
    while (expired < events.length && ms - (events[expired] as HeldEvent).ms >= this.#historyTtlMs) expired++
    if (expired > 0) held.lostThrough = events.splice(0, expired)[expired - 1]
  }

  #dropIfIdle (channel: string, held: Channel): void {
    if (held.watchers.size === 0 && held.events.length === 0) this.#channels.delete(channel)
  }

  #sweep (): void {
    const ms = this.#tick()
    for (const [channel, held] of this.#channels) {
      this.#trimExpired(held, ms)
      this.#dropIfIdle(channel, held)
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

function compare (a: Position, b: Position): number {
  return a.ms - b.ms || a.n - b.n
}
