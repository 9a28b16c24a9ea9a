// The long-poll bus: publishes events into the engine and holds the polls that wait for them. It
// knows nothing about HTTP; lib/http/routes.ts turns requests into calls here.
import type { ChannelBacklog, ChannelWatcher, CometEngine, ReadPosition } from './engines/engine.js'
import { errors } from './errors.js'
import { CometMetrics, type AnswerReason, type CometStats } from './metrics.js'
import { defaultMaxReplyBytes } from './options.js'
import { countEvents, formatPollReply, isChannelName } from './protocol.js'
import { withinReplyBytes } from './reply-bound.js'

export interface BusOptions {
  /** How long a poll with nothing to deliver waits, in milliseconds. */
  pollTimeoutMs: number
  maxPending: number
  /** Most events of one channel in one reply. */
  batchSize: number
  /** Most bytes of an event's data as JSON. */
  maxPayload: number
  /** Most bytes of events in one reply; the first event goes however large. @default 1 MiB */
  maxReplyBytes?: number
}

export class CometBus {
  readonly #engine: CometEngine
  readonly #options: BusOptions
  readonly #waiting = new Set<PendingPoll>()
  /**
   * Reads started by the notifications of one publish, by channel and cursor, until the next
   * microtask: a publish wakes all the polls waiting on its channel in one go, and those waiting at
   * the same cursor (all of them, after a fan-out) share one read, and one reply when they watch
   * that channel alone. A read is consistent in itself (its events and its next cursor go
   * together), so sharing one can never lose or repeat an event.
   */
  readonly #sharedReads = new Map<string, SharedRead>()
  readonly #metrics: CometMetrics
  #closing = false

  constructor (engine: CometEngine, options: BusOptions, metrics = new CometMetrics()) {
    this.#engine = engine
    this.#options = options
    this.#metrics = metrics
  }

  /** Stores an event and wakes the polls waiting on its channel. */
  async publish (channel: string, data: unknown): Promise<{ id: string }> {
    if (!isChannelName(channel)) throw new errors.FST_COMET_INVALID_CHANNEL(JSON.stringify(channel) ?? String(channel))
    const json = toJson(data)
    const bytes = Buffer.byteLength(json)
    if (bytes > this.#options.maxPayload) throw new errors.FST_COMET_PAYLOAD_TOO_LARGE(bytes, this.#options.maxPayload)
    const id = await this.#engine.publish(channel, json)
    this.#metrics.onPublish(channel, id)
    return { id }
  }

  /**
   * Starts a poll. Its `reply` resolves to the JSON answer: at once when something is new, else
   * when something is published or the poll times out. It rejects with a coded error for a bad
   * cursor or when `maxPending` polls wait already, and never settles once cancelled. With
   * `wait: false` it answers at once even with nothing new: a client learns its cursors at "now".
   */
  poll (subscription: ReadonlyMap<string, ReadPosition>, { wait = true }: { wait?: boolean } = {}): PendingPoll {
    const poll = new PendingPoll(this, [...subscription.keys()], wait)
    this.#start(poll, [...subscription.values()]).catch(error => this.#fail(poll, error))
    return poll
  }

  stats (): CometStats {
    return this.#metrics.stats(this.#engine.channelCount(), this.#waiting.size, this.#engine.health?.())
  }

  /** Answers every waiting poll now with what it has (nothing new), and every later poll at once. */
  close (): void {
    this.#closing = true
    for (const poll of this.#waiting) this.#answer(poll, unchanged(poll.nexts), poll.nexts, 'close')
  }

  /** @internal Called by a poll's notify(). */
  onPublish (poll: PendingPoll, channel: string): void {
    if (poll.state === 'reading') {
      poll.missedPublish = true
    } else if (poll.state === 'waiting') {
      this.#answerPublish(poll, channel).catch(error => this.#fail(poll, error))
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

  async #start (poll: PendingPoll, positions: readonly ReadPosition[]): Promise<void> {
    const { channels } = poll
    // Watch first: a publish while the reads are under way is then seen, and read again below.
    // An engine on a server may need a round trip to watch: then the reads wait for it.
    let watching: Array<Promise<void>> | undefined
    for (const channel of channels) {
      const watched = this.#engine.watch(channel, poll)
      if (watched !== undefined) (watching ??= []).push(watched)
    }
    if (watching !== undefined) {
      await Promise.all(watching)
      if (poll.state === 'done') return
    }
    let readFrom = positions
    let backlogs = await this.#readAll(channels, readFrom)
    while (poll.missedPublish && !hasNews(backlogs)) {
      poll.missedPublish = false
      readFrom = backlogs.map(b => b.next)
      backlogs = await this.#readAll(channels, readFrom)
    }
    if (poll.state === 'done') return
    if (hasNews(backlogs) || this.#closing || !poll.wait || poll.superseded) {
      return this.#answer(poll, backlogs, readFrom, this.#closing ? 'close' : poll.superseded ? 'superseded' : 'wait0')
    }
    if (this.#waiting.size >= this.#options.maxPending) throw new errors.FST_COMET_TOO_MANY_PENDING(this.#options.maxPending)
    poll.nexts = backlogs.map(b => b.next)
    poll.state = 'waiting'
    poll.timer = setTimeout(() => this.#expire(poll).catch(error => this.#fail(poll, error)), this.#options.pollTimeoutMs)
    this.#waiting.add(poll)
  }

  // A publish on one of the poll's channels: answer with what it brought. The other channels had
  // nothing new when the poll began to wait, and their cursors stay valid for the next poll.
  async #answerPublish (poll: PendingPoll, channel: string): Promise<void> {
    this.#release(poll)
    const index = poll.channels.indexOf(channel)
    const cursor = poll.nexts[index] as string
    // Channel names have no spaces.
    const key = `${channel} ${cursor}`
    let shared = this.#sharedReads.get(key)
    if (shared === undefined) {
      if (this.#sharedReads.size === 0) queueMicrotask(() => this.#sharedReads.clear())
      shared = { backlog: this.#engine.read(channel, cursor, this.#options.batchSize), reply: undefined, wokenAt: performance.now(), latencyMs: undefined }
      this.#sharedReads.set(key, shared)
    }
    const backlog = await shared.backlog
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
    const backlogs = await this.#readAll(poll.channels, poll.nexts).catch(error => {
      // The engine's store is down: the poll keeps its cursors, as if nothing came.
      if ((error as { code?: unknown }).code === 'FST_COMET_ENGINE_UNAVAILABLE') return unchanged(poll.nexts)
      throw error
    })
    this.#answer(poll, backlogs, poll.nexts, 'timeout')
  }

  #readAll (channels: readonly string[], positions: readonly ReadPosition[]): Promise<ChannelBacklog[]> {
    const { batchSize } = this.#options
    return Promise.all(channels.map((channel, i) => this.#engine.read(channel, positions[i] as ReadPosition, batchSize)))
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
    poll.resolve(reply.json)
  }

  #fail (poll: PendingPoll, error: unknown): void {
    this.#release(poll)
    poll.state = 'done'
    poll.reject(error)
  }

  // Leaves the waiting state: from here on, no publish, timer or close reaches the poll.
  #release (poll: PendingPoll): void {
    if (poll.state === 'answering' || poll.state === 'done') return
    poll.state = 'answering'
    clearTimeout(poll.timer)
    this.#waiting.delete(poll)
    for (const channel of poll.channels) this.#engine.unwatch(channel, poll)
  }
}

/**
 * One subscribe in progress, from its first read until its answer or its client's hang-up:
 * reading → waiting → answering → done, where any state before done may go to done on a hang-up.
 */
export class PendingPoll implements ChannelWatcher {
  readonly reply: Promise<string>
  readonly channels: readonly string[]
  /** False for a poll that answers at once, with or without news. */
  readonly wait: boolean
  /** Its client pipelined another poll behind it: answer at once, with or without news. */
  superseded = false
  /** The cursor each channel is read from next; set when the poll starts to wait. */
  nexts: readonly string[] = []
  state: 'reading' | 'waiting' | 'answering' | 'done' = 'reading'
  /** A publish came while the first reads were under way: read again before waiting. */
  missedPublish = false
  timer: NodeJS.Timeout | undefined
  resolve!: (body: string) => void
  reject!: (error: unknown) => void
  readonly #bus: CometBus

  constructor (bus: CometBus, channels: readonly string[], wait: boolean) {
    this.#bus = bus
    this.channels = channels
    this.wait = wait
    this.reply = new Promise((resolve, reject) => {
      this.resolve = resolve
      this.reject = reject
    })
  }

  notify (channel: string): void {
    this.#bus.onPublish(this, channel)
  }

  /** The client hung up; nothing more is sent and nothing keeps the poll. */
  cancel (): void {
    this.#bus.onHangUp(this)
  }

  /** Answers now with what the poll has (nothing new, if it waits): its client wants another one. */
  answerNow (): void {
    this.#bus.onAnswerNow(this)
  }
}

/** A read shared by the polls that one publish wakes at the same channel and cursor. */
interface SharedRead {
  readonly backlog: ChannelBacklog | Promise<ChannelBacklog>
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

/** Backlogs with no events at the cursors held: the answer for channels that did not change. */
function unchanged (nexts: readonly string[]): ChannelBacklog[] {
  return nexts.map(next => ({ events: [], next, gap: false }))
}

function hasNews (backlogs: readonly ChannelBacklog[]): boolean {
  return backlogs.some(b => b.gap || b.events.length > 0)
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

function countGaps (backlogs: readonly ChannelBacklog[]): number {
  let gaps = 0
  for (const backlog of backlogs) if (backlog.gap) gaps++
  return gaps
}
