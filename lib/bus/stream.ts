// A subscribe that stays open (a stream): the bus's reads, cursors and gap rules, handed to a
// transport as they come instead of as one answer. It knows nothing about HTTP or the wire format:
// lib/http/stream.ts writes what it hands over as Server-Sent Events.
import { hasNews } from './backlogs.js'
import type { ChannelBacklog, ChannelWatcher, ReadPosition } from '../engines/engine.js'
import { fromOldest } from '../engines/engine.js'
import { cursorAllHeld, cursorFromNow, type Subscription } from '../protocol/poll.js'

/**
 * Why a stream ended: its client hung up (or pipelined another request behind it), it fell
 * `maxStreamQueueBytes` behind, its lifetime ran out, the server closed, or its engine failed in a
 * way a later read cannot heal.
 */
export type StreamEndReason = 'hang-up' | 'slow' | 'lifetime' | 'close' | 'error'

export const streamEndReasons: readonly StreamEndReason[] = ['hang-up', 'slow', 'lifetime', 'close', 'error']

/** Per read shared by the one-channel streams a publish wakes: a slot where a transport keeps its encoding of it. */
export interface SharedDelivery {
  encoded: unknown
}

/** What a stream's transport does with what the bus decides. */
export interface StreamSink {
  /** The first reads went well: the stream is open, at `cursors` (one per channel, in order). */
  open (cursors: readonly string[]): void
  /**
   * Events or gaps, cut to maxReplyBytes: `backlogs[i]` for channel i, read after `before[i]`.
   * `shared` is given when every one-channel stream woken by the same publish at the same cursor
   * gets the same thing: an encoding kept on it serves them all. Returns false when the client
   * has not read what was sent before: the stream's catch-up then waits for resume().
   */
  deliver (backlogs: readonly ChannelBacklog[], before: readonly string[], shared: SharedDelivery | undefined): boolean
  /** The stream could not open: a bad cursor, the store down, too many streams. Nothing was sent. */
  fail (error: unknown): void
  /** The bus ended the stream (the server closes, or the engine failed); nothing more comes. */
  end (reason: StreamEndReason): void
}

/** What a stream needs of the bus: its reads, the byte bound, and its bookkeeping. */
export interface StreamBusAccess {
  readonly batchSize: number
  readonly closing: boolean
  watch (channel: string, watcher: ChannelWatcher): void | Promise<void>
  unwatch (channel: string, watcher: ChannelWatcher): void
  /** Reads every channel at once; synchronous when the engine is. */
  readAll (channels: readonly string[], positions: readonly ReadPosition[]): ChannelBacklog[] | Promise<ChannelBacklog[]>
  /** The read of `channel` after `cursor` shared by everything one publish wakes there. */
  sharedRead (channel: string, cursor: string): SharedStreamRead
  /** withinReplyBytes with the bus's maxReplyBytes. */
  bound (backlogs: readonly ChannelBacklog[], positions: readonly ReadPosition[]): readonly ChannelBacklog[]
  /** The stream is done: forget it. */
  forget (stream: BusStream): void
}

/** The part of the bus's shared read (lib/bus/bus.ts) that streams use. */
export interface SharedStreamRead extends SharedDelivery {
  backlog: ChannelBacklog | Promise<ChannelBacklog>
  /** The read cut to maxReplyBytes for a one-channel stream, made once for all of them. */
  bounded: readonly ChannelBacklog[] | undefined
}

/**
 * One stream, from its first read until it ends: reading → (waiting ↔ reading, paused while its
 * client catches up) → done. It watches its channels all the while: a delivery costs one read,
 * shared with every poll and stream that the same publish woke at the same cursor, and one write.
 */
export class BusStream implements ChannelWatcher {
  readonly channels: readonly string[]
  readonly #bus: StreamBusAccess
  readonly #sink: StreamSink
  #state: 'opening' | 'reading' | 'waiting' | 'paused' | 'done' = 'opening'
  /** The cursor of each channel after everything handed to the sink. */
  #cursors: string[] = []
  /** A publish came while a read was under way or the stream was paused: read everything again. */
  #missedPublish = false
  /** The last read may have left events behind (a full batch, or cut by maxReplyBytes). */
  #more = false
  /** A read failed because the engine's store was down: read again on refresh() or the next publish. */
  #stale = false

  readonly #positions: readonly ReadPosition[]

  constructor (bus: StreamBusAccess, { channels, positions }: Subscription, sink: StreamSink) {
    this.#bus = bus
    this.channels = channels
    this.#positions = positions
    this.#sink = sink
  }

  /** Opens the stream, or fails it through the sink. Watches first, so that no publish falls between watch and read. */
  start (): void {
    if (this.#state !== 'opening') return
    const positions = this.#positions
    let watching: Array<Promise<void>> | undefined
    for (const channel of this.channels) {
      const watched = this.#bus.watch(channel, this)
      if (watched !== undefined) (watching ??= []).push(watched)
    }
    if (watching === undefined) {
      this.#read(positions)
      return
    }
    Promise.all(watching).then(() => {
      if (this.#state !== 'done') this.#read(positions)
    }).catch(error => this.#onError(error))
  }

  notify (channel: string): void {
    if (this.#state !== 'waiting') {
      if (this.#state !== 'done') this.#missedPublish = true
      return
    }
    this.#state = 'reading'
    const index = this.channels.length === 1 ? 0 : this.channels.indexOf(channel)
    const cursor = this.#cursors[index] as string
    let shared: SharedStreamRead
    try {
      shared = this.#bus.sharedRead(channel, cursor)
    } catch (error) {
      // Not into the publisher's loop, which tells every watcher of the channel.
      this.#onError(error)
      return
    }
    const { backlog } = shared
    if (backlog instanceof Promise) {
      backlog.then(read => this.#onSharedRead(shared, read, index, cursor)).catch(error => this.#onError(error))
    } else {
      this.#onSharedRead(shared, backlog, index, cursor)
    }
  }

  /** The client read what was queued: go on with the catch-up, or back to waiting. */
  resume (): void {
    if (this.#state !== 'paused') return
    if (this.#more || this.#missedPublish) this.#read(this.#cursors)
    else this.#state = 'waiting'
  }

  /** Reads again if a read failed while the engine's store was down; the transport calls it now and then. */
  refresh (): void {
    if (this.#state === 'waiting' && this.#stale) this.#read(this.#cursors)
  }

  /** The transport ended the stream (hang-up, slow client, lifetime): nothing more is read or handed over. */
  cancel (): void {
    this.#done()
  }

  /** @internal The bus cannot take the stream: fail it before it starts. */
  refuse (error: unknown): void {
    this.#state = 'done'
    this.#sink.fail(error)
  }

  /** @internal The server closes: end the stream now. The bus holds only streams not done. */
  close (): void {
    this.#done()
    this.#sink.end('close')
  }

  #read (positions: readonly ReadPosition[]): void {
    this.#state = this.#state === 'opening' ? 'opening' : 'reading'
    this.#missedPublish = false
    let backlogs: ChannelBacklog[] | Promise<ChannelBacklog[]>
    try {
      // The memory engine throws a bad cursor's error at once; others reject.
      backlogs = this.#bus.readAll(this.channels, positions)
    } catch (error) {
      this.#onError(error)
      return
    }
    if (backlogs instanceof Promise) {
      backlogs.then(read => this.#onRead(read, positions)).catch(error => this.#onError(error))
    } else {
      this.#onRead(backlogs, positions)
    }
  }

  #onRead (backlogs: readonly ChannelBacklog[], positions: readonly ReadPosition[]): void {
    if (this.#state === 'done') return
    this.#stale = false
    const bounded = this.#bus.bound(backlogs, positions)
    const before = this.#state === 'opening' ? positions.map(cursorOf) : this.#cursors
    if (this.#state === 'opening') {
      // The cursors where the stream begins: after the events of this first read that are not sent
      // yet, that is, where the first read started for a channel with news.
      this.#cursors = bounded.map((backlog, i) => backlog.events.length > 0 || backlog.gap ? before[i] as string : backlog.next)
      this.#state = 'reading'
      this.#sink.open(this.#cursors)
      if (this.#bus.closing) {
        this.close()
        return
      }
    }
    this.#onPiece(bounded, before, backlogs !== bounded || isFull(backlogs, this.#bus.batchSize), undefined, false)
  }

  #onSharedRead (shared: SharedStreamRead, backlog: ChannelBacklog, index: number, cursor: string): void {
    if (this.#state === 'done') return
    this.#stale = false
    if (this.channels.length === 1) {
      shared.bounded ??= this.#bus.bound([backlog], [cursor])
      this.#onPiece(shared.bounded, this.#cursors, shared.bounded[0] !== backlog || backlog.events.length >= this.#bus.batchSize, shared, true)
      return
    }
    const backlogs: ChannelBacklog[] = this.#cursors.map(next => ({ events: [], next, gap: false }))
    backlogs[index] = backlog
    const bounded = this.#bus.bound(backlogs, this.#cursors)
    this.#onPiece(bounded, this.#cursors, bounded[index] !== backlog || backlog.events.length >= this.#bus.batchSize, undefined, true)
  }

  // Hands a read to the sink, then reads on while events may be left behind, at the pace the
  // client reads them: a catch-up goes out in pieces of at most maxReplyBytes. A `live` delivery
  // (a publish woke the stream) does not wait for the client: it is one write, and the sink ends
  // a stream whose client leaves too much unread.
  #onPiece (bounded: readonly ChannelBacklog[], before: readonly string[], more: boolean, shared: SharedDelivery | undefined, live: boolean): void {
    let drained = true
    if (hasNews(bounded)) {
      // `before` may be #cursors itself: it is read by the sink before the cursors move on.
      drained = this.#sink.deliver(bounded, before, shared)
      if (this.#state === 'done') return
    }
    for (let i = 0; i < bounded.length; i++) this.#cursors[i] = (bounded[i] as ChannelBacklog).next
    this.#more = more
    if (!drained && (more || !live)) {
      this.#state = 'paused'
    } else if (more) {
      // A turn between pieces, so that a long catch-up does not hold the event loop.
      this.#state = 'reading'
      setImmediate(() => { if (this.#state === 'reading') this.#read(this.#cursors) })
    } else if (this.#missedPublish) {
      this.#read(this.#cursors)
    } else {
      this.#state = 'waiting'
    }
  }

  #onError (error: unknown): void {
    if (this.#state === 'done') return
    if (this.#state === 'opening') {
      this.#done()
      this.#sink.fail(error)
      return
    }
    if ((error as { code?: unknown }).code === 'FST_COMET_ENGINE_UNAVAILABLE') {
      // The store is down: keep the cursors and wait. The engine wakes its watchers after it
      // reconnects if their channel moved, and refresh() reads again in any case.
      this.#stale = true
      this.#state = 'waiting'
      return
    }
    this.#done()
    this.#sink.end('error')
  }

  #done (): void {
    if (this.#state === 'done') return
    this.#state = 'done'
    for (const channel of this.channels) this.#bus.unwatch(channel, this)
    this.#bus.forget(this)
  }
}

// A read position as a cursor a client may send back: "all" for the oldest, "0" for now (a read
// from now holds no events, so it never stands for events still to come).
function cursorOf (position: ReadPosition): string {
  if (typeof position === 'string') return position
  return position === fromOldest ? cursorAllHeld : cursorFromNow[1] as string
}

function isFull (backlogs: readonly ChannelBacklog[], batchSize: number): boolean {
  for (const backlog of backlogs) if (backlog.events.length >= batchSize) return true
  return false
}
