// The Redis engine's options: their defaults, and their checks at construction.
import type { Cluster, Redis } from 'ioredis'
import { errors } from '../../errors.js'
import { invalid, positiveInteger, positiveNumber } from '../../validate.js'
import { defaultHistorySize, defaultHistoryTtl, defaultIdempotencyWindow } from '../defaults.js'

export interface RedisEngineOptions {
  /**
   * Where Redis is: a URL (`redis://host:port/db`, `rediss://…`), whose connections the engine opens
   * and closes; or a client you already have (an ioredis `Redis` or `Cluster`, such as
   * `fastify.redis` from `@fastify/redis`), which stays yours. Either way the engine opens one more
   * connection of its own for subscriptions, a duplicate of the client.
   */
  redis: string | Redis | Cluster
  /** Events kept per channel. @default 100 */
  historySize?: number | undefined
  /**
   * Seconds an event is kept. Every key the engine writes expires this long after the channel's
   * last publish or read, so a quiet channel leaves nothing behind in Redis.
   * @default 300
   */
  historyTtl?: number | undefined
  /** Prefix of every Redis key and notification channel the engine uses. @default 'comet:' */
  keyPrefix?: string | undefined
  /**
   * Start a new epoch on a channel when Redis's `run_id` changed since its last publish (a
   * restart, or a failover to a replica), so that cursors from before get a gap instead of silently
   * skipping events Redis lost. Turn it off only when Redis never loses acknowledged writes (AOF with
   * `appendfsync always` and no failover), to save the cost of `INFO server` in each script.
   * @default true
   */
  detectDataLoss?: boolean | undefined
  /**
   * Seconds an idempotency key is remembered on a channel, in a Redis key of its own that expires
   * then: a publish repeating the key within it stores nothing and is answered with the first
   * publish's id, from whichever process. After it, the same key publishes a new event.
   * @default 300
   */
  idempotencyWindow?: number | undefined
  /**
   * Seconds between the engine's PINGs on each connection (each master's on a Cluster, and each
   * sharded subscriber connection through ioredis's health check). A connection that leaves one
   * unanswered for this long is taken as cut off: polls and publishes that need it get a 503 at
   * once until it answers again, so a Redis that stops answering without closing its connection
   * (a partition, a stopped process) is found within two intervals.
   * @default 1
   */
  heartbeatInterval?: number | undefined
}

export interface ResolvedRedisEngineOptions {
  redis: string | Redis | Cluster
  historySize: number
  historyTtlMs: number
  keyPrefix: string
  detectDataLoss: boolean
  idempotencyWindowMs: number
  heartbeatIntervalMs: number
}

export const defaultKeyPrefix = 'comet:'
const knownOptions = ['redis', 'historySize', 'historyTtl', 'keyPrefix', 'detectDataLoss', 'idempotencyWindow', 'heartbeatInterval']

export function resolveRedisEngineOptions (options: RedisEngineOptions): ResolvedRedisEngineOptions {
  if (typeof options !== 'object' || options === null) invalid('options', 'an object like { redis: "redis://127.0.0.1:6379" }', options)
  const {
    redis,
    historySize = defaultHistorySize,
    historyTtl = defaultHistoryTtl,
    keyPrefix = defaultKeyPrefix,
    detectDataLoss = true,
    idempotencyWindow = defaultIdempotencyWindow,
    heartbeatInterval = 1,
    ...unknown
  } = options
  const [unknownName] = Object.keys(unknown)
  if (unknownName !== undefined) throw new errors.FST_COMET_UNKNOWN_OPTION(unknownName, knownOptions.join(', '))

  const isUrl = typeof redis === 'string' && /^rediss?:\/\//.test(redis)
  const isClient = typeof redis === 'object' && redis !== null && typeof (redis as { duplicate?: unknown }).duplicate === 'function'
  if (!isUrl && !isClient) invalid('redis', 'a redis:// or rediss:// URL, or an ioredis client such as fastify.redis', redis)
  positiveInteger('historySize', historySize)
  // Every key expires, so Infinity is not an option here as it is for the memory engine.
  positiveNumber('historyTtl', historyTtl, 'a positive number of seconds')
  // The channel's hash tag is the first {…} of a key: braces in the prefix would take its place.
  if (typeof keyPrefix !== 'string' || keyPrefix.length > 64 || /[{}\s]/.test(keyPrefix)) {
    invalid('keyPrefix', 'a string of at most 64 characters without braces or spaces', keyPrefix)
  }
  if (typeof detectDataLoss !== 'boolean') invalid('detectDataLoss', 'true or false', detectDataLoss)
  positiveNumber('idempotencyWindow', idempotencyWindow, 'a positive number of seconds')
  // (setInterval takes at most about 24 days; an hour is already far from "found in seconds".)
  if (typeof heartbeatInterval !== 'number' || !(heartbeatInterval > 0 && heartbeatInterval <= 3600)) {
    invalid('heartbeatInterval', 'a positive number of seconds, at most 3600', heartbeatInterval)
  }
  return {
    redis,
    historySize,
    historyTtlMs: Math.ceil(historyTtl * 1000),
    keyPrefix,
    detectDataLoss,
    idempotencyWindowMs: Math.ceil(idempotencyWindow * 1000),
    heartbeatIntervalMs: Math.ceil(heartbeatInterval * 1000)
  }
}
