import type { FastifyRequest } from 'fastify'
import type { CometEngine } from './engines/engine.js'
import { errors } from './errors.js'

/**
 * Decides whether a request may publish to, or subscribe to, one channel. Return (or resolve)
 * `true` to allow and `false` to answer 403; a thrown error keeps its `statusCode`, so a hook can
 * answer 401 for a missing login.
 */
export type CometAuthorizer = (request: FastifyRequest, channel: string) => boolean | Promise<boolean>

export interface CometOptions {
  /**
   * Path prefix of the plugin's routes. The register option of the same name does not apply to a
   * plugin made with fastify-plugin, so the plugin reads its own.
   * @default '/comet'
   */
  prefix?: string
  /**
   * With `sleep`, how long a poll with nothing to deliver waits: `tries` × `sleep` seconds, as in
   * the PHP original. The wait is one timer, not a loop: a publish answers at once.
   * @default 20
   */
  tries?: number | undefined
  /**
   * Seconds of one try; fractions are allowed. Also the Retry-After, rounded up, of a 503 when
   * `maxPending` is reached.
   * @default 2
   */
  sleep?: number | undefined
  /**
   * Events kept per channel by the built-in memory engine, so that a client that comes back with
   * its cursor gets what it missed. Older events are evicted, and a client that needed them is
   * told with `gap`.
   * @default 100
   */
  historySize?: number | undefined
  /**
   * Seconds an event is kept by the built-in memory engine. A channel with no waiting poll and no
   * event younger than this is dropped, so memory stays bounded. `Infinity` keeps events until
   * `historySize` evicts them.
   * @default 300
   */
  historyTtl?: number | undefined
  /**
   * Most channels one subscribe may name.
   * @default 32
   */
  maxChannels?: number | undefined
  /**
   * Most bytes of one event: the HTTP publish body limit, and the size of the event's data as JSON.
   * @default 65536
   */
  maxPayload?: number | undefined
  /**
   * Most long-polls waiting at once; past it a subscribe gets 503 with Retry-After. Each waiting
   * poll holds a socket, so the operating system's open-file limit is the bound by default.
   * @default Infinity
   */
  maxPending?: number | undefined
  /**
   * Most events of one channel in one reply; a client with more to catch up gets the rest at once
   * on its next poll.
   * @default 100
   */
  batchSize?: number | undefined
  /**
   * Called for each channel of an HTTP publish. `fastify.comet.publish()` is server code and is
   * not asked.
   * @default undefined (everyone may publish)
   */
  authorizePublish?: CometAuthorizer | undefined
  /**
   * Called for each channel of every subscribe (each poll), so a revoked right takes effect on the
   * next poll.
   * @default undefined (everyone may subscribe)
   */
  authorizeSubscribe?: CometAuthorizer | undefined
  /**
   * Where events are stored and how waiting polls are woken. An engine passed here stays yours:
   * the plugin does not close it. `historySize` and `historyTtl` configure the built-in memory
   * engine, so they cannot be combined with this option.
   * @default a new MemoryEngine
   */
  engine?: CometEngine | undefined
  /**
   * Serve the browser client as an ES module at `{prefix}/client.js`, so that a page can
   * `import { CometClient } from '/comet/client.js'` without a build step. Turn it off when you
   * bundle `fastify-comet/client` yourself.
   * @default true
   */
  serveClient?: boolean | undefined
}

export interface ResolvedCometOptions {
  prefix: string
  /** tries × sleep, in milliseconds. */
  pollTimeoutMs: number
  retryAfterSeconds: number
  historySize: number
  historyTtl: number
  maxChannels: number
  maxPayload: number
  maxPending: number
  batchSize: number
  authorizePublish: CometAuthorizer | undefined
  authorizeSubscribe: CometAuthorizer | undefined
  engine: CometEngine | undefined
  serveClient: boolean
}

export const defaultPrefix = '/comet'
export const defaultTries = 20
export const defaultSleep = 2
export const defaultHistorySize = 100
export const defaultHistoryTtl = 300
export const defaultMaxChannels = 32
export const defaultMaxPayload = 65536
export const defaultMaxPending = Infinity
export const defaultBatchSize = 100

// Options of fastify.register() itself, which reach every plugin's options object.
const registerOptions = ['logLevel', 'logSerializers']

const engineMethods = ['publish', 'read', 'watch', 'unwatch', 'channelCount', 'close'] as const

export function resolveOptions (options: CometOptions): ResolvedCometOptions {
  const {
    prefix = defaultPrefix,
    tries = defaultTries,
    sleep = defaultSleep,
    historySize,
    historyTtl,
    maxChannels = defaultMaxChannels,
    maxPayload = defaultMaxPayload,
    maxPending = defaultMaxPending,
    batchSize = defaultBatchSize,
    authorizePublish,
    authorizeSubscribe,
    engine,
    serveClient = true,
    ...unknown
  } = options

  for (const name of Object.keys(unknown)) {
    if (!registerOptions.includes(name)) {
      throw new errors.FST_COMET_UNKNOWN_OPTION(name, knownOptionNames())
    }
  }

  if (typeof prefix !== 'string' || !/^\/[^?#]*[^/?#]$/.test(prefix)) {
    invalid('prefix', 'a path that starts with "/" and does not end with "/", like "/comet"', prefix)
  }
  positiveInteger('tries', tries)
  positiveNumber('sleep', sleep)
  positiveInteger('maxChannels', maxChannels)
  positiveInteger('maxPayload', maxPayload)
  positiveInteger('batchSize', batchSize)
  if (maxPending !== Infinity) positiveInteger('maxPending', maxPending, 'a positive integer or Infinity')
  optionalFunction('authorizePublish', authorizePublish)
  optionalFunction('authorizeSubscribe', authorizeSubscribe)
  if (typeof serveClient !== 'boolean') invalid('serveClient', 'true or false', serveClient)

  if (engine !== undefined) {
    const engineLike = engine as unknown as Record<string, unknown> | null
    if (engineLike === null || typeof engineLike !== 'object' || engineMethods.some(m => typeof engineLike[m] !== 'function')) {
      invalid('engine', `an object with the methods ${engineMethods.join(', ')}`, engine)
    }
    if (historySize !== undefined) invalid('historySize', 'left out when an engine is given (configure the engine itself)', historySize)
    if (historyTtl !== undefined) invalid('historyTtl', 'left out when an engine is given (configure the engine itself)', historyTtl)
  }
  const resolvedHistorySize = historySize ?? defaultHistorySize
  const resolvedHistoryTtl = historyTtl ?? defaultHistoryTtl
  positiveInteger('historySize', resolvedHistorySize)
  if (resolvedHistoryTtl !== Infinity) positiveNumber('historyTtl', resolvedHistoryTtl, 'a positive number of seconds or Infinity')

  const pollTimeoutMs = tries * sleep * 1000
  // A timer longer than 2^31 - 1 ms fires at once in Node.js, which would turn every poll into a busy loop.
  if (pollTimeoutMs > 0x7fffffff) invalid('tries', 'such that tries × sleep is at most 24 days', tries)

  return {
    prefix,
    pollTimeoutMs,
    retryAfterSeconds: Math.ceil(sleep),
    historySize: resolvedHistorySize,
    historyTtl: resolvedHistoryTtl,
    maxChannels,
    maxPayload,
    maxPending,
    batchSize,
    authorizePublish,
    authorizeSubscribe,
    engine,
    serveClient
  }
}

function knownOptionNames (): string {
  return ['prefix', 'tries', 'sleep', 'historySize', 'historyTtl', 'maxChannels', 'maxPayload', 'maxPending',
    'batchSize', 'authorizePublish', 'authorizeSubscribe', 'engine', 'serveClient'].join(', ')
}

export function invalid (name: string, expected: string, value: unknown): never {
  throw new errors.FST_COMET_INVALID_OPTION(name, expected, describe(value))
}

function describe (value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value)
  if (typeof value === 'function') return 'a function'
  if (typeof value === 'object' && value !== null) return Array.isArray(value) ? 'an array' : 'an object'
  return String(value)
}

export function positiveInteger (name: string, value: unknown, expected = 'a positive integer'): void {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) invalid(name, expected, value)
}

export function positiveNumber (name: string, value: unknown, expected = 'a positive number'): void {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) invalid(name, expected, value)
}

function optionalFunction (name: string, value: unknown): void {
  if (value !== undefined && typeof value !== 'function') invalid(name, 'a function (request, channel) => boolean | Promise<boolean>', value)
}
