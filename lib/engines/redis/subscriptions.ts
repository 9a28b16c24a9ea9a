// The Redis engine's subscriptions: one SSUBSCRIBE per channel per process, however many polls
// watch it, sent in batches and dropped a little after the last watcher leaves. Each channel keeps
// the newest notification, so the polls one publish wakes are answered without reading Redis.
import calculateSlot from 'cluster-key-slot'
import type { Cluster, Redis } from 'ioredis'
import type { ChannelBacklog, ChannelWatcher } from '../engine.js'
import { errors } from '../../errors.js'

/** Long-poll clients come straight back after an answer: keep the subscription for them a while. */
const unsubscribeDelayMs = 1000

interface Subscription {
  readonly channel: string
  readonly watchers: Set<ChannelWatcher>
  /** True once Redis acknowledged the SSUBSCRIBE on the current connection. */
  acked: boolean
  /** The acknowledgement under way, which the watchers that come meanwhile wait for too. */
  acking: Promise<void> | undefined
  /** What the newest notification since the acknowledgement tells, as answers to reads. */
  latest: Latest | undefined
  /** The newest cursor of the channel this process knows of; a heal compares Redis's with it. */
  known: string | undefined
  /** Reads from Redis sent since the last notification, by cursor and limit: see sharedRead(). */
  reads: Map<string, KeptRead>
  leaveTimer: NodeJS.Timeout | undefined
}

interface Latest {
  /** Local time it came, to go back to Redis before the channel's keys could expire. */
  readonly receivedMs: number
  readonly id: string
  /** The answer to a read at the cursor before the event, when the notification carried it. */
  readonly fromBefore: { readonly cursor: string, readonly backlog: ChannelBacklog } | undefined
  /** The answer to a read at the event's own cursor: nothing newer. */
  readonly atTop: ChannelBacklog
}

interface KeptRead {
  /** Local time it was sent: kept no longer than a notification would be. */
  readonly sentMs: number
  readonly backlog: Promise<ChannelBacklog>
}

/** Most reads kept per channel between two notifications (polls at as many different cursors). */
const maxKeptReads = 64

interface Batch {
  readonly done: Promise<void>
  resolve (): void
  reject (error: unknown): void
}

export class Subscriptions {
  readonly #subscriber: Redis | Cluster
  readonly #keyPrefix: string
  readonly #freshForMs: number
  readonly #whenUp: () => void | Promise<void>
  readonly #byChannel = new Map<string, Subscription>()
  readonly #toSubscribe = new Set<string>()
  readonly #toUnsubscribe = new Set<string>()
  #batch: Batch | undefined
  /**
   * Batches whose SSUBSCRIBE was sent and not answered. ioredis neither answers nor rejects a
   * command that was under way when its connection dropped (autoResendUnfulfilledCommands is
   * off): without this, such a subscribe would never settle, and every later watcher of its
   * channels, and the heal after the reconnection, would wait on it forever.
   */
  readonly #sent = new Set<Batch>()
  #flushScheduled = false
  /** Counts connections: an acknowledgement counts only on the connection it was asked on. */
  #connection = 0

  /**
   * @param whenUp returns when the subscriber connection can take commands, a promise while it
   * connects for the first time, and throws FST_COMET_ENGINE_UNAVAILABLE while it is down.
   * @param freshForMs how long a notification may answer reads; reads from Redis keep the
   * channel's keys alive, so this stays well below historyTtl.
   */
  constructor (subscriber: Redis | Cluster, keyPrefix: string, freshForMs: number, whenUp: () => void | Promise<void>) {
    this.#subscriber = subscriber
    this.#keyPrefix = keyPrefix
    this.#freshForMs = freshForMs
    this.#whenUp = whenUp
  }

  /** The shard channel of a channel's notifications, in the channel's hash slot. */
  redisChannel (channel: string): string {
    return `${this.#keyPrefix}{${channel}}:n`
  }

  watch (channel: string, watcher: ChannelWatcher): void | Promise<void> {
    let subscription = this.#byChannel.get(channel)
    if (subscription === undefined) {
      subscription = { channel, watchers: new Set(), acked: false, acking: undefined, latest: undefined, known: undefined, reads: new Map(), leaveTimer: undefined }
      this.#byChannel.set(channel, subscription)
    }
    clearTimeout(subscription.leaveTimer)
    subscription.leaveTimer = undefined
    subscription.watchers.add(watcher)
    if (subscription.acked) return
    return this.#acking(subscription)
  }

  unwatch (channel: string, watcher: ChannelWatcher): void {
    const subscription = this.#byChannel.get(channel)
    if (subscription === undefined || !subscription.watchers.delete(watcher) || subscription.watchers.size > 0) return
    subscription.leaveTimer = setTimeout(() => this.#leave(subscription), unsubscribeDelayMs).unref()
  }

  /** Channels with at least one watcher. */
  watchedChannels (): IterableIterator<string> {
    return [...this.#byChannel.values()].filter(s => s.watchers.size > 0).map(s => s.channel).values()
  }

  /** A read answered from the newest notification, or undefined when Redis must be asked. */
  cachedRead (channel: string, cursor: string): ChannelBacklog | undefined {
    const subscription = this.#byChannel.get(channel)
    const latest = subscription?.latest
    if (latest === undefined || Date.now() - latest.receivedMs > this.#freshForMs) return undefined
    if (cursor === latest.id) return latest.atTop
    if (cursor === latest.fromBefore?.cursor) return latest.fromBefore.backlog
    return undefined
  }

  /**
   * A read from Redis at this cursor that polls can share, in flight or done, or undefined. Polls
   * come back after a fan-out at one cursor, over as long as the fan-out took: they share one read
   * instead of one each. Sharing keeps watch before read: a read is kept only when it was sent
   * after the subscription was acknowledged on the current connection, and only until the next
   * notification or disconnection. A poll that shares it watches the channel already, so any
   * publish that the read may not show still comes to it as a notification.
   */
  sharedRead (channel: string, key: string): Promise<ChannelBacklog> | undefined {
    const kept = this.#byChannel.get(channel)?.reads.get(key)
    if (kept === undefined || Date.now() - kept.sentMs > this.#freshForMs) return undefined
    return kept.backlog
  }

  /** A read being sent to Redis: kept for sharedRead() if the channel's subscription holds now. */
  keepRead (channel: string, key: string, backlog: Promise<ChannelBacklog>): void {
    const subscription = this.#byChannel.get(channel)
    if (subscription === undefined || !subscription.acked || subscription.reads.size >= maxKeptReads) return
    const reads = subscription.reads
    reads.set(key, { sentMs: Date.now(), backlog })
    // A failed read is not kept: the next poll asks again.
    backlog.catch(() => { if (reads.get(key)?.backlog === backlog) reads.delete(key) })
  }

  /** A read from Redis found the channel's newest cursor: the first one since subscribing is where healing starts from. */
  noteTop (channel: string, top: string): void {
    const subscription = this.#byChannel.get(channel)
    if (subscription !== undefined && subscription.known === undefined) subscription.known = top
  }

  /** A notification from Redis: remember it, and tell the watchers. */
  onMessage (redisChannel: string, message: string): void {
    const channel = redisChannel.slice(this.#keyPrefix.length + 1, -3)
    const subscription = this.#byChannel.get(channel)
    // Before the acknowledgement, a message is from an earlier subscription on this connection.
    if (subscription === undefined || !subscription.acked) return
    const idStart = message.indexOf(' ') + 1
    const jsonStart = message.indexOf(' ', idStart) + 1
    const before = message.slice(0, idStart - 1)
    const id = message.slice(idStart, jsonStart - 1)
    const json = message.slice(jsonStart)
    subscription.latest = {
      receivedMs: Date.now(),
      id,
      fromBefore: json === '' ? undefined : { cursor: before, backlog: { events: [{ id, json }], next: id, gap: false } },
      atTop: { events: [], next: id, gap: false }
    }
    subscription.known = id
    // Before the watchers are told: the reads they make must not be answered from before this event.
    subscription.reads = new Map()
    for (const watcher of subscription.watchers) watcher.notify(channel)
  }

  /**
   * The subscriber connection dropped: no subscription holds until it is made again. On a Cluster,
   * `lost` says which shard channels were on the connection that dropped (one per master); the
   * others still hold.
   */
  onDisconnect (lost: (redisChannel: string) => boolean = () => true): void {
    this.#connection++
    const dropped = new errors.FST_COMET_ENGINE_UNAVAILABLE('the subscription connection dropped')
    for (const batch of this.#sent) batch.reject(dropped)
    this.#sent.clear()
    for (const subscription of this.#byChannel.values()) {
      if (!lost(this.redisChannel(subscription.channel))) continue
      subscription.acked = false
      subscription.latest = undefined
      subscription.reads = new Map()
    }
  }

  /** Subscribes again to every channel kept; resolves once all are acknowledged. */
  async resubscribe (): Promise<void> {
    await Promise.all([...this.#byChannel.values()].map(s => this.#acking(s)))
  }

  /** The newest cursor of the channel this process knows of. */
  known (channel: string): string | undefined {
    return this.#byChannel.get(channel)?.known
  }

  /**
   * Redis says the channel's newest cursor is `top`, read when this process knew `known`. If they
   * differ, events came (or Redis lost some) while the process could not hear: wake the channel's
   * watchers, and return how many. A notification that came during the read woke them already.
   */
  heal (channel: string, known: string | undefined, top: string): number {
    const subscription = this.#byChannel.get(channel)
    // (A read from Redis notes the top when the process knew none, so `known` undefined never wakes.)
    if (subscription === undefined || subscription.known !== known || known === top) return 0
    subscription.known = top
    // Nor may the newest notification answer a read: newer events came unheard (on a Cluster, the
    // slot moved to a master this process was not subscribed on, with no connection dropped).
    subscription.latest = undefined
    subscription.reads = new Map()
    const woken = subscription.watchers.size
    for (const watcher of subscription.watchers) watcher.notify(channel)
    return woken
  }

  close (): void {
    for (const subscription of this.#byChannel.values()) clearTimeout(subscription.leaveTimer)
    this.#byChannel.clear()
  }

  // The acknowledgement under way, kept on the subscription until it settles. (Cleared by the
  // caller's finally, not inside #subscribe: that can fail before it returns its promise.)
  #acking (subscription: Subscription): Promise<void> {
    if (subscription.acking !== undefined) return subscription.acking
    const acking = this.#subscribe(subscription).finally(() => {
      subscription.acking = undefined
    })
    subscription.acking = acking
    return acking
  }

  async #subscribe (subscription: Subscription): Promise<void> {
    await this.#whenUp()
    const connection = this.#connection
    this.#toSubscribe.add(subscription.channel)
    this.#toUnsubscribe.delete(subscription.channel)
    await this.#flushSoon().done
    if (connection !== this.#connection) throw new errors.FST_COMET_ENGINE_UNAVAILABLE('the subscription connection dropped')
    subscription.acked = true
  }

  #leave (subscription: Subscription): void {
    this.#byChannel.delete(subscription.channel)
    this.#toUnsubscribe.add(subscription.channel)
    this.#toSubscribe.delete(subscription.channel)
    this.#flushSoon()
  }

  // Polls arrive in bursts (a fan-out answers many, and they all come back): one SSUBSCRIBE and
  // one SUNSUBSCRIBE for what a turn of the event loop gathered.
  #flushSoon (): Batch {
    this.#batch ??= makeBatch()
    if (!this.#flushScheduled) {
      this.#flushScheduled = true
      setImmediate(() => this.#flush())
    }
    return this.#batch
  }

  #flush (): void {
    this.#flushScheduled = false
    const batch = this.#batch as Batch
    this.#batch = undefined
    if (this.#toUnsubscribe.size > 0) {
      // Nothing waits for it; a failure means the connection dropped, which unsubscribes anyway.
      for (const channels of this.#bySlot(this.#toUnsubscribe)) this.#subscriber.sunsubscribe(...channels).catch(ignore)
      this.#toUnsubscribe.clear()
    }
    if (this.#toSubscribe.size === 0) return batch.resolve()
    const commands = this.#bySlot(this.#toSubscribe).map(async channels => await this.#subscriber.ssubscribe(...channels))
    this.#toSubscribe.clear()
    this.#sent.add(batch)
    Promise.all(commands).then(
      () => {
        this.#sent.delete(batch)
        batch.resolve()
      },
      (error: Error) => {
        this.#sent.delete(batch)
        batch.reject(new errors.FST_COMET_ENGINE_UNAVAILABLE(error.message))
      }
    )
  }

  // The shard channels of these channels, in one list per SSUBSCRIBE: on a Cluster one per hash
  // slot, as Redis (and ioredis, which sends each to its slot's node) refuses channels of
  // several slots in one command; on one Redis, all in one.
  #bySlot (channels: Iterable<string>): string[][] {
    if (!this.#subscriber.isCluster) return [[...channels].map(c => this.redisChannel(c))]
    const bySlot = new Map<number, string[]>()
    for (const channel of channels) {
      const redisChannel = this.redisChannel(channel)
      const slot = calculateSlot(redisChannel)
      const list = bySlot.get(slot)
      if (list === undefined) bySlot.set(slot, [redisChannel])
      else list.push(redisChannel)
    }
    return [...bySlot.values()]
  }
}

function makeBatch (): Batch {
  let resolve!: () => void
  let reject!: (error: unknown) => void
  const done = new Promise<void>((resolve_, reject_) => {
    resolve = resolve_
    reject = reject_
  })
  return { done, resolve, reject }
}

/** For promises whose failure changes nothing. */
export function ignore (): void {}
