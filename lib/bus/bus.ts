// The long-poll bus: publishes events into the engine and holds the polls that wait for them. It
// knows nothing about HTTP; lib/http/routes.ts turns requests into calls here.
import { countGaps, hasNews, nextsOf, unchanged } from './backlogs.js'
import { PendingPoll, type PollAnswerer } from './pending-poll.js'
import { BusStream, type SharedStreamRead, type StreamBusAccess, type StreamSink } from './stream.js'
import type { ChannelBacklog, CometEngine, ReadPosition } from '../engines/engine.js'
import { fromNow, fromOldest } from '../engines/engine.js'
import { errors, withRetryAfter } from '../errors.js'
import { CometMetrics, type AnswerReason, type CometStats } from '../metrics.js'
import { defaultMaxReplyBytes } from '../options.js'
import { assertChannelName, countEvents, formatPollReply, isIdempotencyKey, type Subscription } from '../protocol/poll.js'
import { withinReplyBytes } from './reply-bound.js'

export interface BusOptions {
  /** How long a poll with nothing to deliver waits, in milliseconds. */
  pollTimeoutMs: number
  maxPending: number
  /** The Retry-After, in whole seconds, of the error a poll gets past maxPending. @default 1 */
  retryAfterSeconds?: number
  /** Most events of one channel in one reply. */
  batchSize: number
  /** Most bytes of an event's data as JSON. */
  maxPayload: number
  /** Most bytes of events in one reply; the first event goes however large. @default 1 MiB */
  maxReplyBytes?: number
  /** Most streams open at once. @default Infinity */
  maxStreams?: number
}

export interface PublishOptions {
  /**
   * Makes the publish safe to repeat: within the engine's window, a publish with the same key on
   * the same channel stores nothing and is answered with the first one's id, marked `replayed`.
   * 1 to 128 characters from A-Z a-z 0-9 _ - . : ~ @ + / =, such as a UUID.
   */
  idempotencyKey?: string | undefined
}

export interface PublishResult {
  /** The event's id: also a cursor, after which the events published later come. */
  id: string
  /** Present on a repeat of an idempotency key: nothing was stored, and `id` is the first publish's. */
  replayed?: true
}

export interface HistoryOptions {
  /** A cursor (from position(), an event id, or a poll's `p`): the events after it. @default the oldest held */
  after?: string | undefined
  /** Most events returned. @default batchSize */
  limit?: number | undefined
}

/** A channel's held events, as server code reads them. */
export interface ChannelHistory {
  /** Oldest first, at most the limit. */
  events: Array<{ id: string, data: unknown }>
  /** The cursor to continue from: the last event's id, or the channel's position when there is none. */
  next: string
  /** True when events after `after` are no longer held: the same rule as a poll's `gap`. */
  gap: boolean
}

export class CometBus {
  readonly #engine: CometEngine
  readonly #options: BusOptions
  /**
   * The polls waiting, oldest first: every poll waits pollTimeoutMs, so this is also the order in
   * which they time out, and one timer, set for the oldest, serves them all (see #expireDue).
   */
  readonly #waiting = new Set<PendingPoll>()
  #expiryTimer: NodeJS.Timeout | undefined
  /**
   * Reads started by the notifications of one publish, by channel and cursor, until the next
   * microtask: a publish wakes all the polls waiting on its channel in one go, and those waiting at
   * the same cursor (all of them, after a fan-out) share one read, and one reply when they watch
   * that channel alone. A read is consistent in itself (its events and its next cursor go
   * together), so sharing one can never lose or repeat an event.
   */
  readonly #sharedReads = new Map<string, Map<string, SharedRead>>()
  readonly #metrics: CometMetrics
  #closing = false
  /** The streams open or opening (lib/bus/stream.ts): they read through #streamAccess. */
  readonly #streams = new Set<BusStream>()
  readonly #streamAccess: StreamBusAccess

  constructor (engine: CometEngine, options: BusOptions, metrics = new CometMetrics()) {
    this.#engine = engine
    this.#options = options
    this.#metrics = metrics
    const bus = this
    this.#streamAccess = {
      batchSize: options.batchSize,
      get closing () { return bus.#closing },
      watch: (channel, watcher) => engine.watch(channel, watcher),
      unwatch: (channel, watcher) => { engine.unwatch(channel, watcher) },
      readAll: (channels, positions) => this.#readAll(channels, positions),
      sharedRead: (channel, cursor) => this.#sharedRead(channel, cursor),
      bound: (backlogs, positions) => withinReplyBytes(backlogs, positions, options.maxReplyBytes ?? defaultMaxReplyBytes),
      forget: stream => { this.#streams.delete(stream) }
    }
  }

  /** Stores an event and wakes the polls waiting on its channel; with a key, at most once within the engine's window. */
  async publish (channel: string, data: unknown, options?: PublishOptions): Promise<PublishResult> {
    assertChannelName(channel)
    const idempotencyKey = options?.idempotencyKey
    if (idempotencyKey !== undefined && !isIdempotencyKey(idempotencyKey)) {
      throw new errors.FST_COMET_INVALID_IDEMPOTENCY_KEY(JSON.stringify(idempotencyKey) ?? String(idempotencyKey))
    }
    const json = toJson(data)
    const bytes = Buffer.byteLength(json)
    if (bytes > this.#options.maxPayload) throw new errors.FST_COMET_PAYLOAD_TOO_LARGE(bytes, this.#options.maxPayload)
    if (idempotencyKey === undefined) {
      const id = await this.#engine.publish(channel, json)
      this.#metrics.onPublish(channel, id)
      return { id }
    }
    if (this.#engine.publishIdempotent === undefined) throw new errors.FST_COMET_IDEMPOTENCY_UNSUPPORTED()
    const { id, replayed } = await this.#engine.publishIdempotent(channel, json, idempotencyKey)
    if (replayed) return { id, replayed: true }
    this.#metrics.onPublish(channel, id)
    return { id }
  }

  /** The cursor that every event published on the channel from now on comes after. */
  async position (channel: string): Promise<string> {
    assertChannelName(channel)
    return (await this.#engine.read(channel, fromNow, 1)).next
  }

  /** The channel's held events after a cursor, or from the oldest, with a poll's gap rule. */
  async history (channel: string, { after, limit = this.#options.batchSize }: HistoryOptions = {}): Promise<ChannelHistory> {
    assertChannelName(channel)
    if (!Number.isSafeInteger(limit) || limit < 1) throw new errors.FST_COMET_INVALID_LIMIT(JSON.stringify(limit) ?? String(limit))
    // A cursor is a string; the engine says whether it is one of its own.
    if (after !== undefined && typeof after !== 'string') throw new errors.FST_COMET_INVALID_CURSOR(JSON.stringify(channel))
    const backlog = await this.#engine.read(channel, after ?? fromOldest, limit)
    return {
      events: backlog.events.map(event => ({ id: event.id, data: JSON.parse(event.json) as unknown })),
      next: backlog.next,
      gap: backlog.gap
    }
  }

  /**
   * Starts a poll. It is answered with its JSON answer: at once when something is new, else when
   * something is published or the poll times out; or failed with a coded error for a bad cursor or
   * when `maxPending` polls wait already. Nothing reaches it once cancelled. With `wait: false` it
   * answers at once even with nothing new: a client learns its cursors at "now".
   *
   * `answerer` hears the outcome; without one, the poll's `reply` promise does. On an engine that
   * answers synchronously (the memory engine), the answerer may be called before poll() returns.
   */
  poll (subscription: Subscription | ReadonlyMap<string, ReadPosition>, { wait = true, answerer }: { wait?: boolean, answerer?: PollAnswerer } = {}): PendingPoll {
    const { channels, positions } = subscription instanceof Map
      ? { channels: [...subscription.keys()], positions: [...subscription.values()] }
      : subscription as Subscription
    const poll = new PendingPoll(this, channels, wait, answerer)
    try {
      this.#start(poll, positions)
    } catch (error) {
      this.#fail(poll, error)
    }
    return poll
  }

  /**
   * A stream: a subscribe that stays open and hands `sink` each event as it comes, with the
   * reads, cursors and gap rules of a poll (lib/bus/stream.ts). It opens on start(), or fails
   * through the sink for a bad cursor, a store that is down, or when `maxStreams` streams are open.
   */
  stream (subscription: Subscription, sink: StreamSink): BusStream {
    const stream = new BusStream(this.#streamAccess, subscription, sink)
    if (this.#streams.size >= (this.#options.maxStreams ?? Infinity)) {
      stream.refuse(withRetryAfter(new errors.FST_COMET_TOO_MANY_STREAMS(this.#options.maxStreams as number), this.#options.retryAfterSeconds ?? 1))
    } else {
      this.#streams.add(stream)
    }
    return stream
  }

  stats (): CometStats {
    return this.#metrics.stats(this.#engine.channelCount(), this.#waiting.size, this.#engine.health?.())
  }

  /** Answers every waiting poll now with what it has (nothing new), and every later poll at once; ends every stream. */
  close (): void {
    this.#closing = true
    for (const poll of this.#waiting) this.#answer(poll, unchanged(poll.nexts), poll.nexts, 'close')
    for (const stream of this.#streams) stream.close()
  }

  /** @internal Called by a poll's notify(). */
  onPublish (poll: PendingPoll, channel: string): void {
    if (poll.state === 'reading') {
      poll.missedPublish = true
    } else if (poll.state === 'waiting') {
      try {
        this.#answerPublish(poll, channel)
      } catch (error) {
        this.#fail(poll, error)
      }
    }
  }

  /** @internal Answer now with what the poll has, as close() does; one still reading answers when it has read. */
  onAnswerNow (poll: PendingPoll): void {
    poll.superseded = true
    if (poll.state === 'waiting') this.#answer(poll, unchanged(poll.nexts), poll.nexts, 'superseded')
  }

  /** @internal The client hung up: forget the poll at once. */
  onHangUp (poll: PendingPoll): void {
    if (poll.state === 'done') return
    this.#release(poll)
    poll.state = 'done'
    this.#metrics.onHangUp(poll.channels)
  }

  // Every step below is synchronous while the engine is: a poll on the memory engine costs no
  // promise from its request to its answer. An engine that answers with promises (Redis) takes the
  // same steps once each promise has settled.
  #start (poll: PendingPoll, positions: readonly ReadPosition[]): void {
    const { channels } = poll
    // Watch first: a publish while the reads are under way is then seen, and read again below.
    // An engine on a server may need a round trip to watch: then the reads wait for it.
    let watching: Array<Promise<void>> | undefined
    for (const channel of channels) {
      const watched = this.#engine.watch(channel, poll)
      if (watched !== undefined) (watching ??= []).push(watched)
    }
    if (watching === undefined) {
      this.#read(poll, positions)
      return
    }
    Promise.all(watching).then(() => {
      if (poll.state !== 'done') this.#read(poll, positions)
    }).catch(error => this.#fail(poll, error))
  }

  #read (poll: PendingPoll, positions: readonly ReadPosition[]): void {
    const backlogs = this.#readAll(poll.channels, positions)
    if (backlogs instanceof Promise) {
      backlogs.then(read => this.#onRead(poll, read, positions)).catch(error => this.#fail(poll, error))
    } else {
      this.#onRead(poll, backlogs, positions)
    }
  }

  #onRead (poll: PendingPoll, backlogs: readonly ChannelBacklog[], readFrom: readonly ReadPosition[]): void {
    if (poll.state === 'done') return
    if (poll.missedPublish && !hasNews(backlogs)) {
      poll.missedPublish = false
      this.#read(poll, nextsOf(backlogs))
      return
    }
    if (hasNews(backlogs) || this.#closing || !poll.wait || poll.superseded) {
      this.#answer(poll, backlogs, readFrom, this.#closing ? 'close' : poll.superseded ? 'superseded' : 'wait0')
      return
    }
    if (this.#waiting.size >= this.#options.maxPending) {
      throw withRetryAfter(new errors.FST_COMET_TOO_MANY_PENDING(this.#options.maxPending), this.#options.retryAfterSeconds ?? 1)
    }
    poll.nexts = nextsOf(backlogs)
    poll.state = 'waiting'
    poll.expiresAt = performance.now() + this.#options.pollTimeoutMs
    this.#waiting.add(poll)
    this.#expiryTimer ??= setTimeout(() => this.#expireDue(), this.#options.pollTimeoutMs)
  }

  // Times out the polls whose time is up, oldest first, and sets the timer for the next one. A
  // timer per poll would cost each poll an object, a closure and two calls into the timer list.
  #expireDue (): void {
    this.#expiryTimer = undefined
    const now = performance.now()
    for (const poll of this.#waiting) {
      if (poll.expiresAt > now) {
        // Timers fire late, never early: no poll is answered before its time.
        this.#expiryTimer = setTimeout(() => this.#expireDue(), poll.expiresAt - now)
        return
      }
      this.#expire(poll).catch(error => this.#fail(poll, error))
    }
  }

  // A publish on one of the poll's channels: answer with what it brought. The other channels had
  // nothing new when the poll began to wait, and their cursors stay valid for the next poll.
  #answerPublish (poll: PendingPoll, channel: string): void {
    this.#release(poll)
    const index = poll.channels.length === 1 ? 0 : poll.channels.indexOf(channel)
    const cursor = poll.nexts[index] as string
    const shared = this.#sharedRead(channel, cursor)
    const { backlog } = shared
    if (backlog instanceof Promise) {
      backlog.then(read => this.#answerShared(poll, shared, read, index, cursor)).catch(error => this.#fail(poll, error))
    } else {
      this.#answerShared(poll, shared, backlog, index, cursor)
    }
  }

  // The read of `channel` from `cursor` that the polls woken by this publish share.
  #sharedRead (channel: string, cursor: string): SharedRead {
    let byCursor = this.#sharedReads.get(channel)
    if (byCursor === undefined) {
      if (this.#sharedReads.size === 0) queueMicrotask(() => this.#sharedReads.clear())
      byCursor = new Map()
      this.#sharedReads.set(channel, byCursor)
    }
    let shared = byCursor.get(cursor)
    if (shared === undefined) {
      const read = this.#engine.read(channel, cursor, this.#options.batchSize)
      shared = { backlog: read, reply: undefined, wokenAt: performance.now(), latencyMs: undefined, bounded: undefined, encoded: undefined }
      // Once settled, the polls still to come take it as it is, without a turn of their own.
      if (read instanceof Promise) {
        const settling = shared
        read.then(backlog => { settling.backlog = backlog }, () => {})
      }
      byCursor.set(cursor, shared)
    }
    return shared
  }

  #answerShared (poll: PendingPoll, shared: SharedRead, backlog: ChannelBacklog, index: number, cursor: string): void {
    // Taken once for all the polls of the read: they are answered in the same turn.
    shared.latencyMs ??= performance.now() - shared.wokenAt
    if (poll.channels.length === 1) {
      shared.reply ??= this.#format(poll.channels, [backlog], [cursor])
      this.#settle(poll, shared.reply, 'events', shared.latencyMs)
      return
    }
    const backlogs = unchanged(poll.nexts)
    backlogs[index] = backlog
    this.#answer(poll, backlogs, poll.nexts, 'events', shared.latencyMs)
  }

  // Nothing came in time. Read once more rather than answer with the cursors held, so that an
  // engine whose notification went astray still delivers, and "now" cursors are fresh.
  async #expire (poll: PendingPoll): Promise<void> {
    this.#release(poll)
    let backlogs: readonly ChannelBacklog[]
    try {
      backlogs = await this.#readAll(poll.channels, poll.nexts)
    } catch (error) {
      // The engine's store is down: the poll keeps its cursors, as if nothing came.
      if ((error as { code?: unknown }).code !== 'FST_COMET_ENGINE_UNAVAILABLE') throw error
      backlogs = unchanged(poll.nexts)
    }
    this.#answer(poll, backlogs, poll.nexts, 'timeout')
  }

  // Synchronous when every read is: the memory engine's.
  #readAll (channels: readonly string[], positions: readonly ReadPosition[]): ChannelBacklog[] | Promise<ChannelBacklog[]> {
    const { batchSize } = this.#options
    const backlogs: Array<ChannelBacklog | Promise<ChannelBacklog>> = []
    let pending = false
    for (let i = 0; i < channels.length; i++) {
      const backlog = this.#engine.read(channels[i] as string, positions[i] as ReadPosition, batchSize)
      if (backlog instanceof Promise) pending = true
      backlogs.push(backlog)
    }
    return pending ? Promise.all(backlogs) : backlogs as ChannelBacklog[]
  }

  /**
   * `readFrom`: where each backlog was read from, where a channel cut by maxReplyBytes resumes.
   * `quietReason`: why the poll is answered if the backlogs carry neither events nor a gap.
   */
  #answer (poll: PendingPoll, backlogs: readonly ChannelBacklog[], readFrom: readonly ReadPosition[], quietReason: AnswerReason, latencyMs?: number): void {
    this.#settle(poll, this.#format(poll.channels, backlogs, readFrom), quietReason, latencyMs)
  }

  #format (channels: readonly string[], backlogs: readonly ChannelBacklog[], readFrom: readonly ReadPosition[]): Reply {
    const bounded = withinReplyBytes(backlogs, readFrom, this.#options.maxReplyBytes ?? defaultMaxReplyBytes)
    return { json: formatPollReply(channels, bounded), events: countEvents(bounded), gaps: countGaps(bounded) }
  }

  /** `latencyMs`: for a poll a publish woke, the time since the bus learnt of that publish. */
  #settle (poll: PendingPoll, reply: Reply, quietReason: AnswerReason, latencyMs: number | undefined): void {
    if (poll.state === 'done') return
    this.#release(poll)
    poll.state = 'done'
    this.#metrics.onAnswer(poll.channels, reply.events > 0 || reply.gaps > 0 ? 'events' : quietReason, reply.events, reply.gaps, latencyMs)
    poll.answer(reply.json)
  }

  #fail (poll: PendingPoll, error: unknown): void {
    if (poll.state === 'done') return
    this.#release(poll)
    poll.state = 'done'
    poll.fail(error)
  }

  // Leaves the waiting state: from here on, no publish, timer or close reaches the poll.
  #release (poll: PendingPoll): void {
    if (poll.state === 'answering' || poll.state === 'done') return
    poll.state = 'answering'
    // No timer left behind once no poll waits: it would hold the process open.
    if (this.#waiting.delete(poll) && this.#waiting.size === 0) {
      clearTimeout(this.#expiryTimer)
      this.#expiryTimer = undefined
    }
    for (const channel of poll.channels) this.#engine.unwatch(channel, poll)
  }
}

/** A read shared by the polls and streams that one publish wakes at the same channel and cursor. */
interface SharedRead extends SharedStreamRead {
  /** A promise until the engine's read settles, then what it read. */
  backlog: ChannelBacklog | Promise<ChannelBacklog>
  /** The reply of a poll on this channel alone, once one has been made. */
  reply: Reply | undefined
  /** performance.now() when the publish was learnt of: the start of the publish-to-answer time. */
  readonly wokenAt: number
  /** The publish-to-answer time of the polls of this read, once the first is answered. */
  latencyMs: number | undefined
}

/** A poll's answer as JSON, and how many events and gaps it carries. */
interface Reply {
  readonly json: string
  readonly events: number
  readonly gaps: number
}

function toJson (data: unknown): string {
  if (data === undefined) return 'null'
  let json: string | undefined
  try {
    json = JSON.stringify(data)
  } catch (error) {
    throw new errors.FST_COMET_INVALID_DATA((error as Error).message)
  }
  if (json === undefined) throw new errors.FST_COMET_INVALID_DATA(`a ${typeof data} is not JSON`)
  return json
}
