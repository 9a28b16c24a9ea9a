// The long-poll bus: publishes events into the engine and holds the polls that wait for them. It
// knows nothing about HTTP; lib/http/routes.ts turns requests into calls here.
import type { ChannelBacklog, ChannelWatcher, CometEngine, ReadPosition } from './engines/engine.js'
import { errors } from './errors.js'
import { countEvents, formatPollReply, isChannelName } from './protocol.js'

export interface CometStats {
  /** Channels the engine holds state for. */
  channels: number
  /** Long-polls waiting right now. */
  pending: number
  /** Events published through this instance. */
  published: number
  /** Events handed to polls, counted once per poll that received them. */
  delivered: number
}

export interface BusOptions {
  /** How long a poll with nothing to deliver waits, in milliseconds. */
  pollTimeoutMs: number
  maxPending: number
  /** Most events of one channel in one reply. */
  batchSize: number
  /** Most bytes of an event's data as JSON. */
  maxPayload: number
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
  #published = 0
  #delivered = 0
  #closing = false

  constructor (engine: CometEngine, options: BusOptions) {
    this.#engine = engine
    this.#options = options
  }

  /** Stores an event and wakes the polls waiting on its channel. */
  async publish (channel: string, data: unknown): Promise<{ id: string }> {
    if (!isChannelName(channel)) throw new errors.FST_COMET_INVALID_CHANNEL(JSON.stringify(channel) ?? String(channel))
    const json = toJson(data)
    const bytes = Buffer.byteLength(json)
    if (bytes > this.#options.maxPayload) throw new errors.FST_COMET_PAYLOAD_TOO_LARGE(bytes, this.#options.maxPayload)
    const id = await this.#engine.publish(channel, json)
    this.#published++
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
    return {
      channels: this.#engine.channelCount(),
      pending: this.#waiting.size,
      published: this.#published,
      delivered: this.#delivered
    }
  }

  /** Answers every waiting poll now with what it has (nothing new), and every later poll at once. */
  close (): void {
    this.#closing = true
    for (const poll of this.#waiting) this.#answer(poll, unchanged(poll.nexts))
  }

  /** @internal Called by a poll's notify(). */
  onPublish (poll: PendingPoll, channel: string): void {
    if (poll.state === 'reading') {
      poll.missedPublish = true
    } else if (poll.state === 'waiting') {
      this.#answerPublish(poll, channel).catch(error => this.#fail(poll, error))
    }
  }

  /** @internal The client hung up: forget the poll at once. */
  onHangUp (poll: PendingPoll): void {
    if (poll.state === 'done') return
    this.#release(poll)
    poll.state = 'done'
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
    let backlogs = await this.#readAll(channels, positions)
    while (poll.missedPublish && !hasNews(backlogs)) {
      poll.missedPublish = false
      backlogs = await this.#readAll(channels, backlogs.map(b => b.next))
    }
    if (poll.state === 'done') return
    if (hasNews(backlogs) || this.#closing || !poll.wait) return this.#answer(poll, backlogs)
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
      shared = { backlog: this.#engine.read(channel, cursor, this.#options.batchSize), reply: undefined }
      this.#sharedReads.set(key, shared)
    }
    const backlog = await shared.backlog
    if (poll.channels.length === 1) {
      shared.reply ??= formatPollReply(poll.channels, [backlog])
      this.#settle(poll, shared.reply, backlog.events.length)
      return
    }
    const backlogs = unchanged(poll.nexts)
    backlogs[index] = backlog
    this.#answer(poll, backlogs)
  }

  // Nothing came in time. Read once more rather than answer with the cursors held, so that an
  // engine whose notification went astray still delivers, and "now" cursors are fresh.
  async #expire (poll: PendingPoll): Promise<void> {
    this.#release(poll)
    this.#answer(poll, await this.#readAll(poll.channels, poll.nexts).catch(error => {
      // The engine's store is down: the poll keeps its cursors, as if nothing came.
      if ((error as { code?: unknown }).code === 'FST_COMET_ENGINE_UNAVAILABLE') return unchanged(poll.nexts)
      throw error
    }))
  }

  #readAll (channels: readonly string[], positions: readonly ReadPosition[]): Promise<ChannelBacklog[]> {
    const { batchSize } = this.#options
    return Promise.all(channels.map((channel, i) => this.#engine.read(channel, positions[i] as ReadPosition, batchSize)))
  }

  #answer (poll: PendingPoll, backlogs: readonly ChannelBacklog[]): void {
    this.#settle(poll, formatPollReply(poll.channels, backlogs), countEvents(backlogs))
  }

  #settle (poll: PendingPoll, reply: string, events: number): void {
    if (poll.state === 'done') return
    this.#release(poll)
    poll.state = 'done'
    this.#delivered += events
    poll.resolve(reply)
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
}

/** A read shared by the polls that one publish wakes at the same channel and cursor. */
interface SharedRead {
  readonly backlog: ChannelBacklog | Promise<ChannelBacklog>
  /** The reply of a poll on this channel alone, once one has been made. */
  reply: string | undefined
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
