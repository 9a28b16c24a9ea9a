// The Redis engine: channels shared by every process on one Redis, with the memory engine's
// guarantee (exactly once, in order, or a gap). Imported from 'fastify-comet/redis' only, so that
// ioredis stays an optional peer dependency.
import calculateSlot from 'cluster-key-slot'
import { Redis, type Cluster, type RedisOptions } from 'ioredis'
import type { ChannelBacklog, ChannelWatcher, CometEngine, EngineHealth, EngineLogger, IdempotentPublish, ReadPosition, StoredEvent } from '../engine.js'
import type { PresenceStore, PresenceStoreOptions } from '../../presence/store.js'
import { fromNow, fromOldest } from '../engine.js'
import { errors } from '../../errors.js'
import { ConnectionLog, describeRedis } from './connection-log.js'
import { formatCursor, freshEpoch, parseCursor } from './cursor.js'
import { Heartbeat, type HeartbeatTarget } from './heartbeat.js'
import { resolveRedisEngineOptions, type RedisEngineOptions } from './options.js'
import { RedisPresenceStore } from './presence.js'
import { presenceScript, publishIdempotentScript, publishScript, readScript, runScript } from './scripts.js'
import { ignore, Subscriptions } from './subscriptions.js'

export type { RedisEngineOptions } from './options.js'

/** Events up to this many bytes of JSON travel inside their notification; larger ones are read back. */
const inlineLimit = 16 * 1024

/** The heartbeat's names of the two connections to one Redis (a Cluster's nodes go by 'host:port'). */
const commandKey = 'command'
const subscriberKey = 'subscriber'

/** How long before a heal that failed (a shard still failing over) is tried again. */
const healRetryMs = 200

/** How long before each reconnection attempt once Redis is gone: 100 ms, doubling, then every second. */
function retryDelay (attempt: number): number {
  return Math.min(50 * 2 ** attempt, 1000)
}

// Commands fail at once while a connection is down, instead of waiting in a queue, and are not
// sent again after a reconnection: the caller got a 503 and may retry.
const connectionOptions = {
  enableOfflineQueue: false,
  autoResendUnfulfilledCommands: false,
  retryStrategy: retryDelay
} satisfies RedisOptions

interface Connection {
  readonly client: Redis | Cluster
  /** Connected once already: from then on, a connection that is down fails commands at once. */
  started: boolean
  /** The first connection under way, for commands that come before it is made. */
  readonly firstReady: Promise<void>
}

/**
 * Keeps each channel's recent events in a Redis stream and wakes the polls of every process through
 * sharded pub/sub. Cursors are an epoch and an offset; the epoch changes whenever Redis may have
 * lost the channel's history, so a client is told of a loss with a gap.
 */
export class RedisEngine implements CometEngine {
  readonly #historySize: number
  readonly #historyTtlMs: number
  readonly #keyPrefix: string
  readonly #detectDataLoss: string
  readonly #idempotencyWindowMs: number
  readonly #ownsClient: boolean
  readonly #command: Connection
  readonly #subscriber: Connection
  readonly #subscriptions: Subscriptions
  readonly #connectionLog: ConnectionLog
  /** Commands sent and not answered, with the node they went to: rejected at once when it drops or stops answering. */
  readonly #inFlight = new Map<string, Set<(error: Error) => void>>()
  readonly #heartbeat: Heartbeat
  /** Channels this engine published on, and when, for channelCount(). */
  readonly #published = new Map<string, number>()
  readonly #sweepTimer: NodeJS.Timeout
  readonly #listeners: Array<[Redis | Cluster, string, (...args: any[]) => void]> = []
  #reconnections = 0
  /** Times a connection dropped, and how many of those the last heal that completed covered. */
  #drops = 0
  #healedDrops = 0
  #healedNotifications = 0
  #closed = false
  #healRetry: NodeJS.Timeout | undefined

  constructor (options: RedisEngineOptions) {
    const { redis, historySize, historyTtlMs, keyPrefix, detectDataLoss, idempotencyWindowMs, heartbeatIntervalMs } = resolveRedisEngineOptions(options)
    this.#historySize = historySize
    this.#historyTtlMs = historyTtlMs
    this.#keyPrefix = keyPrefix
    this.#detectDataLoss = detectDataLoss ? '1' : '0'
    this.#idempotencyWindowMs = idempotencyWindowMs
    this.#ownsClient = typeof redis === 'string'
    const command = typeof redis === 'string' ? new Redis(redis, connectionOptions) : redis
    // On a Cluster, ioredis's own health check of each sharded subscriber connection is the
    // heartbeat there: it drops a connection that leaves a PING unanswered for an interval (of at
    // least a second, ioredis's floor). Meanwhile the heartbeat of the masters' command
    // connections refuses new subscriptions on a stuck shard.
    const subscriber = command.isCluster
      ? (command as Cluster).duplicate(undefined, {
          // A duplicate of a lazyConnect client would wait for a first command that waits for it.
          lazyConnect: false,
          shardedSubscribers: true,
          shardedSubscriberHealthCheckInterval: Math.max(heartbeatIntervalMs, 1000),
          // A slot that moved is told by a sunsubscribe pushed by the old owner, on which ioredis
          // loads the slot table once, maybe from a node that does not know of the move yet; then
          // nothing would load it again. Loaded every interval, a move is followed within one.
          slotsRefreshInterval: Math.max(heartbeatIntervalMs, 1000),
          redisOptions: connectionOptions
        })
      : (command as Redis).duplicate({ ...connectionOptions, autoResubscribe: false, lazyConnect: false })
    this.#command = this.#track(command)
    this.#subscriber = this.#track(subscriber)
    this.#subscriptions = new Subscriptions(subscriber, keyPrefix, historyTtlMs / 2, () => this.#whenUp(this.#subscriber))

    if (this.#ownsClient) command.on('error', ignore)
    // Errors of the connection the engine opened are seen as 'close' and 'ready' below.
    subscriber.on('error', ignore)
    // The subscriber connects where the command connection does, so its errors give the reason
    // of a failure; a client of the user's gets no error listener from the engine, which would
    // silence ioredis's own report of its errors.
    this.#connectionLog = new ConnectionLog(describeRedis(redis))
    this.#listen(subscriber, 'error', (error: Error) => this.#connectionLog.onError(error))
    if (this.#ownsClient) this.#listen(command, 'error', (error: Error) => this.#connectionLog.onError(error))
    // 'reconnecting' rather than 'close': a client of the user's that they close is not a failure.
    for (const client of [command, subscriber]) this.#listen(client, 'reconnecting', () => this.#connectionLog.onDown())
    this.#listen(command, 'close', () => {
      this.#drops++
      const lost = new errors.FST_COMET_ENGINE_UNAVAILABLE('the connection to Redis dropped')
      for (const rejects of this.#inFlight.values()) for (const reject of rejects) reject(lost)
      this.#inFlight.clear()
    })
    this.#heartbeat = new Heartbeat(heartbeatIntervalMs, () => this.#heartbeatTargets(), key => this.#onStuck(key), () => this.#onAnswered())
    this.#listen(command, 'ready', () => this.#onReady())
    this.#listen(subscriber, 'close', () => {
      this.#drops++
      this.#subscriptions.onDisconnect()
    })
    this.#listen(subscriber, 'ready', () => {
      // The first connection is made before firstReady's callbacks run.
      if (this.#subscriber.started) this.#reconnections++
      this.#onReady()
    })
    if (subscriber.isCluster) {
      // ioredis keeps one sharded subscriber connection per master, and replaces one that drops
      // (a failover, a node gone) or whose slots moved (resharding), and resubscribes it by
      // itself, without telling when that holds. A lost one ends its channels' subscriptions
      // here; each new topology (after a failover, a migration, or a sunsubscribe pushed by
      // Redis) heals every channel: subscribe again, acknowledged, then catch up from history.
      this.#listen(subscriber, '-node', (_redis: unknown, nodeKey: string | undefined) => {
        // Without a node key, it is a command connection of the subscriber client's pool.
        if (nodeKey === undefined) return
        this.#drops++
        const slots = (subscriber as Cluster).slots
        this.#subscriptions.onDisconnect(redisChannel => slots[calculateSlot(redisChannel)]?.[0] === nodeKey)
      })
      this.#listen(subscriber, 'subscribersReady', () => {
        this.#drops++
        this.#onReady()
      })
      // ioredis may miss a slot that moved (its refresh can ask a node that does not know yet) and
      // leave its channels unsubscribed: each slot table either client loads is checked too.
      for (const client of [command, subscriber] as Cluster[]) {
        const owners = new Map<number, string | undefined>()
        this.#listen(client, 'refresh', () => this.#onSlotTable(client, owners))
      }
    }
    this.#listen(subscriber, 'smessage', (channel: string, message: string) => this.#subscriptions.onMessage(channel, message))
    this.#sweepTimer = setInterval(() => this.#sweepPublished(), Math.min(historyTtlMs, 60_000)).unref()
  }

  async publish (channel: string, json: string): Promise<string> {
    if (this.#closed) throw new errors.FST_COMET_CLOSED()
    const id = await this.#call(publishScript, channel, [json, this.#historySize, inlineLimit]) as string
    this.#published.set(channel, Date.now())
    return id
  }

  async publishIdempotent (channel: string, json: string, idempotencyKey: string): Promise<IdempotentPublish> {
    if (this.#closed) throw new errors.FST_COMET_CLOSED()
    const args = [json, this.#historySize, inlineLimit, this.#idempotencyWindowMs]
    const [id, outcome] = await this.#call(publishIdempotentScript, channel, args, `i:${idempotencyKey}`) as [string, 0 | 1 | 2]
    if (outcome === 2) throw new errors.FST_COMET_IDEMPOTENCY_KEY_REUSED(JSON.stringify(idempotencyKey), channel)
    if (outcome === 0) this.#published.set(channel, Date.now())
    return { id, replayed: outcome === 1 }
  }

  read (channel: string, position: ReadPosition, limit: number): ChannelBacklog | Promise<ChannelBacklog> {
    if (this.#closed) throw new errors.FST_COMET_CLOSED()
    if (position === fromNow) return this.#read(channel, ['now', '', limit])
    if (position === fromOldest) return this.#read(channel, ['oldest', '', limit])
    const cached = this.#subscriptions.cachedRead(channel, position)
    if (cached !== undefined) return cached
    const key = `${position} ${limit}`
    const shared = this.#subscriptions.sharedRead(channel, key)
    if (shared !== undefined) return shared
    const { epoch, offset } = parseCursor(channel, position)
    const backlog = this.#read(channel, [epoch, offset, limit])
    this.#subscriptions.keepRead(channel, key, backlog)
    return backlog
  }

  watch (channel: string, watcher: ChannelWatcher): void | Promise<void> {
    // On a Cluster, the shard's subscriber connection would not answer either (ioredis's health
    // check drops it only after an interval of silence of its own).
    const node = this.#command.client.isCluster ? this.#nodeOf(this.#subscriptions.redisChannel(channel)) : subscriberKey
    if (this.#heartbeat.isStuck(node)) return Promise.reject(new errors.FST_COMET_ENGINE_UNAVAILABLE(`Redis at ${node} does not answer`))
    return this.#subscriptions.watch(channel, watcher)
  }

  unwatch (channel: string, watcher: ChannelWatcher): void {
    this.#subscriptions.unwatch(channel, watcher)
  }

  /** Channels with a watcher in this process, and channels this process published on within historyTtl. */
  channelCount (): number {
    this.#sweepPublished()
    let count = 0
    for (const channel of this.#subscriptions.watchedChannels()) if (!this.#published.has(channel)) count++
    return count + this.#published.size
  }

  attachLogger (logger: EngineLogger): () => void {
    return this.#connectionLog.attach(logger)
  }

  health (): EngineHealth {
    return {
      connected: this.#command.client.status === 'ready' && this.#subscriber.client.status === 'ready' && !this.#heartbeat.anyStuck,
      reconnections: this.#reconnections,
      healedNotifications: this.#healedNotifications
    }
  }

  /** Members of channels in Redis, shared by every process: see presence.ts beside this module. */
  presenceStore ({ graceMs }: PresenceStoreOptions): PresenceStore {
    return new RedisPresenceStore(this.#keyPrefix, graceMs, (keys, args) => this.#run(presenceScript, keys, [this.#historySize, inlineLimit, ...args]))
  }

  /** Closes the subscription connection, and the command connection when the engine opened it from a URL. */
  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    clearInterval(this.#sweepTimer)
    clearTimeout(this.#healRetry)
    this.#heartbeat.stop()
    this.#subscriptions.close()
    for (const [client, event, listener] of this.#listeners) client.removeListener(event, listener)
    const subscriber = this.#subscriber.client
    subscriber.disconnect()
    // A Cluster closed while it connects may still become ready (ioredis), and then its slot-table
    // refresh timer keeps the process alive: closed again when it does.
    if (subscriber.isCluster) subscriber.once('ready', subscriber.disconnect.bind(subscriber))
    if (this.#ownsClient) this.#command.client.disconnect()
  }

  async #read (channel: string, args: [string, string, number]): Promise<ChannelBacklog> {
    const reply = await this.#call(readScript, channel, args) as [string, number, number, ...Array<number | string>]
    const [epoch, top, gap] = reply
    const events: StoredEvent[] = []
    for (let i = 3; i < reply.length; i += 2) events.push({ id: formatCursor(epoch, reply[i] as number), json: reply[i + 1] as string })
    const topCursor = formatCursor(epoch, top)
    this.#subscriptions.noteTop(channel, topCursor)
    return { events, next: events[events.length - 1]?.id ?? topCursor, gap: gap === 1 }
  }

  // Runs a script on the channel's keys, which share the channel's hash tag (one Cluster slot).
  // `idempotencyRecord`: the name, after the tag, of the key that remembers an idempotency key.
  async #call (script: typeof readScript, channel: string, args: ReadonlyArray<string | number>, idempotencyRecord?: string): Promise<unknown> {
    const tag = `${this.#keyPrefix}{${channel}}`
    const keys = idempotencyRecord === undefined ? [`${tag}:m`, `${tag}:s`] : [`${tag}:m`, `${tag}:s`, `${tag}:${idempotencyRecord}`]
    return this.#run(script, keys, args)
  }

  // Runs a script on keys of one hash tag (one Cluster slot), with the arguments of meta.lua
  // first, failing with FST_COMET_ENGINE_UNAVAILABLE.
  async #run (script: typeof readScript, keys: readonly string[], args: ReadonlyArray<string | number>): Promise<unknown> {
    const up = this.#whenUp(this.#command)
    if (up !== undefined) await up
    const node = this.#nodeOf(keys[0] as string)
    if (this.#heartbeat.isStuck(node)) throw new errors.FST_COMET_ENGINE_UNAVAILABLE(`Redis at ${node} does not answer`)
    const inFlight = this.#inFlightOn(node)
    return new Promise((resolve, reject) => {
      inFlight.add(reject)
      runScript(this.#command.client, script, keys, [freshEpoch(), this.#detectDataLoss, this.#historyTtlMs, ...args]).then(
        value => {
          inFlight.delete(reject)
          resolve(value)
        },
        (error: Error) => {
          inFlight.delete(reject)
          reject(new errors.FST_COMET_ENGINE_UNAVAILABLE(error.message))
        }
      )
    })
  }

  // Returns when the connection can take commands; throws while it is down.
  #whenUp (connection: Connection): void | Promise<void> {
    if (this.#closed) throw new errors.FST_COMET_CLOSED()
    if (connection.client.status === 'ready') return
    if (!connection.started) return connection.firstReady
    throw new errors.FST_COMET_ENGINE_UNAVAILABLE(`the connection to Redis is ${connection.client.status}`)
  }

  // Both connections are up again: subscribe again, then wake the polls whose channel moved while
  // this process could not hear its notifications.
  #onReady (): void {
    if (this.#command.client.status !== 'ready' || this.#subscriber.client.status !== 'ready') return
    this.#connectionLog.onUp()
    if (this.#drops === this.#healedDrops) return
    this.#heal().catch(() => {
      // On a Cluster, a shard may still be failing over while the connection is ready: try
      // again shortly rather than wait for the next event that may never come.
      if (this.#closed || this.#healRetry !== undefined) return
      this.#healRetry = setTimeout(() => {
        this.#healRetry = undefined
        this.#onReady()
      }, healRetryMs).unref()
    })
  }

  async #heal (): Promise<void> {
    const drops = this.#drops
    await this.#subscriptions.resubscribe()
    await Promise.all([...this.#subscriptions.watchedChannels()].map(async channel => {
      const known = this.#subscriptions.known(channel)
      const now = await this.#read(channel, ['now', '', 1])
      this.#healedNotifications += this.#subscriptions.heal(channel, known, now.next)
    }))
    // A drop during the heal leaves it to the heal after the next reconnection.
    this.#healedDrops = drops
  }

  // The command connection (each master's, on a Cluster) and, on one Redis, the subscription one.
  #heartbeatTargets (): HeartbeatTarget[] {
    const command = this.#command.client
    if (!command.isCluster) return [{ key: commandKey, client: command as Redis }, { key: subscriberKey, client: this.#subscriber.client as Redis }]
    return (command as Cluster).nodes('master').map(client => ({ key: `${client.options.host}:${client.options.port}`, client }))
  }

  // The node that serves a key: its 'host:port' on a Cluster, as the client's slot table says.
  #nodeOf (key: string): string {
    const command = this.#command.client
    if (!command.isCluster) return commandKey
    return (command as Cluster).slots[calculateSlot(key)]?.[0] ?? commandKey
  }

  // A connection left a PING unanswered for a whole interval: what waits on it gets a 503 now,
  // and so does what comes until it answers again. Its connection is not dropped (it may be the
  // user's client); on one Redis, a stuck subscription connection may have missed notifications.
  #onStuck (key: string): void {
    this.#drops++
    const stuck = new errors.FST_COMET_ENGINE_UNAVAILABLE(`Redis at ${key} does not answer`)
    const inFlight = this.#inFlightOn(key)
    for (const reject of inFlight) reject(stuck)
    inFlight.clear()
    if (key === subscriberKey) this.#subscriptions.onDisconnect()
  }

  // A slot of a watched channel now served by another master (resharding, failover): heal, as
  // its subscription may have ended with the move (Redis pushes a sunsubscribe) and what was
  // published since went unheard. `owners` holds what this client's table said before.
  #onSlotTable (client: Cluster, owners: Map<number, string | undefined>): void {
    let moved = false
    for (const channel of this.#subscriptions.watchedChannels()) {
      const slot = calculateSlot(this.#subscriptions.redisChannel(channel))
      const owner = client.slots[slot]?.[0]
      if (owners.has(slot) && owners.get(slot) !== owner) moved = true
      owners.set(slot, owner)
    }
    if (!moved) return
    this.#drops++
    this.#onReady()
  }

  #inFlightOn (node: string): Set<(error: Error) => void> {
    let inFlight = this.#inFlight.get(node)
    if (inFlight === undefined) {
      inFlight = new Set()
      this.#inFlight.set(node, inFlight)
    }
    return inFlight
  }

  // It answers again: heal as after a reconnection, once nothing is stuck.
  #onAnswered (): void {
    if (!this.#heartbeat.anyStuck) this.#onReady()
  }

  #track (client: Redis | Cluster): Connection {
    const started = client.status === 'ready'
    const connection: Connection = {
      client,
      started,
      firstReady: started
        ? Promise.resolve()
        : new Promise((resolve, reject) => {
          client.once('ready', resolve)
          client.once('close', () => reject(new errors.FST_COMET_ENGINE_UNAVAILABLE('Redis could not be reached')))
        })
    }
    connection.firstReady.then(() => { connection.started = true }, () => { connection.started = true })
    return connection
  }

  #listen (client: Redis | Cluster, event: string, listener: (...args: any[]) => void): void {
    client.on(event, listener)
    this.#listeners.push([client, event, listener])
  }

  #sweepPublished (): void {
    const oldest = Date.now() - this.#historyTtlMs
    for (const [channel, publishedMs] of this.#published) if (publishedMs < oldest) this.#published.delete(channel)
  }
}
