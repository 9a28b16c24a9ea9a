// The Redis engine: channels shared by every process on one Redis, with the memory engine's
// guarantee (exactly once, in order, or a gap). Imported from 'fastify-comet/redis' only, so that
// ioredis stays an optional peer dependency.
import { Redis, type Cluster, type RedisOptions } from 'ioredis'
import type { ChannelBacklog, ChannelWatcher, CometEngine, EngineHealth, EngineLogger, ReadPosition, StoredEvent } from '../engine.js'
import type { PresenceStore, PresenceStoreOptions } from '../../presence/store.js'
import { fromNow, fromOldest } from '../engine.js'
import { errors } from '../../errors.js'
import { ConnectionLog, describeRedis } from './connection-log.js'
import { formatCursor, freshEpoch, parseCursor } from './cursor.js'
import { resolveRedisEngineOptions, type RedisEngineOptions } from './options.js'
import { RedisPresenceStore } from './presence.js'
import { presenceScript, publishScript, readScript, runScript } from './scripts.js'
import { ignore, Subscriptions } from './subscriptions.js'

export type { RedisEngineOptions } from './options.js'

/** Events up to this many bytes of JSON travel inside their notification; larger ones are read back. */
const inlineLimit = 16 * 1024

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
  readonly #ownsClient: boolean
  readonly #command: Connection
  readonly #subscriber: Connection
  readonly #subscriptions: Subscriptions
  readonly #connectionLog: ConnectionLog
  /** Commands sent and not answered: rejected at once when the connection drops. */
  readonly #inFlight = new Set<(error: Error) => void>()
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

  constructor (options: RedisEngineOptions) {
    const { redis, historySize, historyTtlMs, keyPrefix, detectDataLoss } = resolveRedisEngineOptions(options)
    this.#historySize = historySize
    this.#historyTtlMs = historyTtlMs
    this.#keyPrefix = keyPrefix
    this.#detectDataLoss = detectDataLoss ? '1' : '0'
    this.#ownsClient = typeof redis === 'string'
    const command = typeof redis === 'string' ? new Redis(redis, connectionOptions) : redis
    const subscriber = command.isCluster
      ? (command as Cluster).duplicate(undefined, { shardedSubscribers: true, redisOptions: connectionOptions })
      : (command as Redis).duplicate({ ...connectionOptions, autoResubscribe: false })
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
      for (const reject of this.#inFlight) reject(lost)
      this.#inFlight.clear()
    })
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
    this.#listen(subscriber, 'smessage', (channel: string, message: string) => this.#subscriptions.onMessage(channel, message))
    this.#sweepTimer = setInterval(() => this.#sweepPublished(), Math.min(historyTtlMs, 60_000)).unref()
  }

  async publish (channel: string, json: string): Promise<string> {
    if (this.#closed) throw new errors.FST_COMET_CLOSED()
    const id = await this.#call(publishScript, channel, [json, this.#historySize, inlineLimit], this.#subscriptions.redisChannel(channel)) as string
    this.#published.set(channel, Date.now())
    return id
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
      connected: this.#command.client.status === 'ready' && this.#subscriber.client.status === 'ready',
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
    this.#subscriptions.close()
    for (const [client, event, listener] of this.#listeners) client.removeListener(event, listener)
    this.#subscriber.client.disconnect()
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
  async #call (script: typeof readScript, channel: string, args: ReadonlyArray<string | number>, notifications?: string): Promise<unknown> {
    const tag = `${this.#keyPrefix}{${channel}}`
    const keys = notifications === undefined ? [`${tag}:m`, `${tag}:s`] : [`${tag}:m`, `${tag}:s`, notifications]
    return this.#run(script, keys, args)
  }

  // Runs a script with the arguments of meta.lua first, failing with FST_COMET_ENGINE_UNAVAILABLE.
  async #run (script: typeof readScript, keys: readonly string[], args: ReadonlyArray<string | number>): Promise<unknown> {
    const up = this.#whenUp(this.#command)
    if (up !== undefined) await up
    return new Promise((resolve, reject) => {
      this.#inFlight.add(reject)
      runScript(this.#command.client, script, keys, [freshEpoch(), this.#detectDataLoss, this.#historyTtlMs, ...args]).then(
        value => {
          this.#inFlight.delete(reject)
          resolve(value)
        },
        (error: Error) => {
          this.#inFlight.delete(reject)
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
    this.#heal().catch(ignore)
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
