import type { FastifyRequest, LogLevel, RouteShorthandOptions } from 'fastify'
import type { CometEngine } from './engines/engine.js'
import { defaultHistoryChannels, defaultHistorySize, defaultHistoryTtl } from './engines/defaults.js'
import { errors } from './errors.js'
import { resolveStreamOptions, streamOptionNames, type CometStreamOptions, type ResolvedStreamOptions } from './http/stream-options.js'
import { invalid, positiveInteger, positiveNumber } from './validate.js'
import { resolvePresenceOptions, type PresenceOptions, type ResolvedPresenceOptions } from './presence/options.js'

/**
 * Decides whether a request may publish to, or subscribe to, one channel. Return (or resolve)
 * `true` to allow and `false` to answer 403; a thrown error keeps its `statusCode`, so a hook can
 * answer 401 for a missing login.
 */
export type CometAuthorizer = (request: FastifyRequest, channel: string) => boolean | Promise<boolean>

/** The plugin's options; those of presence are in lib/presence/options.ts, those of streaming in lib/http/stream-options.ts. */
export interface CometOptions extends PresenceOptions, CometStreamOptions {
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
   * Bytes the built-in memory engine's history may take across all channels: the events' JSON and
   * ids, plus a fixed cost per event and per channel. Past it, the oldest events of any channel are
   * evicted and a client that needed them is told with `gap`; a publish never fails for it.
   * @default a quarter of the Node.js heap limit (about 1 GiB of a default 4 GiB heap)
   */
  historyBytes?: number | undefined
  /**
   * Channels the built-in memory engine may hold events for at once. Past it, the oldest events of
   * any channel are evicted until a channel holds none.
   * @default 100000
   */
  historyChannels?: number | undefined
  /**
   * Seconds the built-in memory engine remembers an idempotency key (the `Idempotency-Key` header
   * of a publish, or `fastify.comet.publish()`'s `idempotencyKey`): a publish repeating a key within
   * this window stores nothing and is answered with the first publish's id. After it, the key is
   * forgotten and the same key publishes a new event. See docs/publishing.md.
   * @default 300
   */
  idempotencyWindow?: number | undefined
  /**
   * Idempotency keys the built-in memory engine remembers at once, across channels; past it the
   * oldest is forgotten before its window ends. Keys also count in `historyBytes`.
   * @default 100000
   */
  idempotencyKeys?: number | undefined
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
   * Most bytes of events in one reply, besides `batchSize`: a client with more to catch up gets
   * the rest at once on its next poll. An event larger than this still goes, alone.
   * @default 1048576 (1 MiB)
   */
  maxReplyBytes?: number | undefined
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
  /**
   * Log level of the plugin's routes (Fastify's route option). Left out, a poll logs at `'warn'`
   * (or the server's level, if quieter): a poll is a heartbeat that comes back every `tries` ×
   * `sleep` seconds from every open page, and two info lines per poll would bury everything else,
   * while its warnings and errors (an engine failing, 5xx) still show. The publish routes and
   * `client.js` log at the server's level. Set it to apply to every route of the plugin, e.g.
   * `'info'` to see each poll while debugging.
   * @default undefined (polls: 'warn'; other routes: the server's level)
   */
  logLevel?: LogLevel
  /**
   * Log serializers of the plugin's routes (Fastify's route option `logSerializers`).
   * @default undefined (the server's serializers)
   */
  logSerializers?: Record<string, (value: any) => any>
  /**
   * Route `config` given to each route of the plugin, read by other plugins through
   * `request.routeOptions.config`; for instance `{ rateLimit: false }` for @fastify/rate-limit.
   * @default undefined
   */
  routeConfig?: Record<string, unknown> | undefined
  /**
   * Route `constraints` of each route of the plugin (Fastify's route option), such as
   * `{ host: 'live.example.com' }` to serve them on one host only.
   * @default undefined
   */
  constraints?: RouteShorthandOptions['constraints'] | undefined
  /**
   * Hide the plugin's routes from API documentation generated from route schemas
   * (@fastify/swagger): sets `schema.hide` on each.
   * @default false
   */
  schemaHide?: boolean | undefined
}

/** What the plugin passes through to each of its routes. */
export interface CometRouteOptions {
  logLevel?: LogLevel
  logSerializers?: Record<string, (value: any) => any>
  config?: Record<string, unknown>
  constraints?: NonNullable<RouteShorthandOptions['constraints']>
}

export interface ResolvedCometOptions {
  prefix: string
  /** tries × sleep, in milliseconds. */
  pollTimeoutMs: number
  retryAfterSeconds: number
  historySize: number
  historyTtl: number
  /** Undefined: the memory engine's default, from the heap limit. */
  historyBytes: number | undefined
  historyChannels: number
  /** Undefined: the memory engine's default. */
  idempotencyWindow: number | undefined
  /** Undefined: the memory engine's default. */
  idempotencyKeys: number | undefined
  maxChannels: number
  maxPayload: number
  maxPending: number
  batchSize: number
  maxReplyBytes: number
  authorizePublish: CometAuthorizer | undefined
  authorizeSubscribe: CometAuthorizer | undefined
  engine: CometEngine | undefined
  serveClient: boolean
  /** Route options given to every route; `logLevel` only when the user set one. */
  routeOptions: CometRouteOptions
  schemaHide: boolean
  /** Streaming (Server-Sent Events): lib/http/stream-options.ts. */
  stream: ResolvedStreamOptions
  /** Undefined: presence is off. */
  presence: ResolvedPresenceOptions | undefined
}

export const defaultPrefix = '/comet'
export const defaultTries = 20
export const defaultSleep = 2
export const defaultMaxChannels = 32
export const defaultMaxPayload = 65536
export const defaultMaxPending = Infinity
export const defaultBatchSize = 100
export const defaultMaxReplyBytes = 1024 * 1024

// fastify.register()'s own options (prefix, logLevel, logSerializers) reach every plugin's options
// object, and register ignores them for a plugin made with fastify-plugin: the plugin reads them
// itself, so each does what it says.
export const logLevels: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']

const engineMethods = ['publish', 'read', 'watch', 'unwatch', 'channelCount', 'close'] as const

export function resolveOptions (options: CometOptions): ResolvedCometOptions {
  const {
    prefix = defaultPrefix,
    tries = defaultTries,
    sleep = defaultSleep,
    historySize,
    historyTtl,
    historyBytes,
    historyChannels,
    idempotencyWindow,
    idempotencyKeys,
    maxChannels = defaultMaxChannels,
    maxPayload = defaultMaxPayload,
    maxPending = defaultMaxPending,
    batchSize = defaultBatchSize,
    maxReplyBytes = defaultMaxReplyBytes,
    authorizePublish,
    authorizeSubscribe,
    engine,
    serveClient = true,
    logLevel,
    logSerializers,
    routeConfig,
    constraints,
    schemaHide = false,
    presence,
    presenceGrace,
    presenceEvents,
    presenceMaxMembers,
    ...others
  } = options
  const { stream, rest: unknown } = resolveStreamOptions(others)

  const [unknownName] = Object.keys(unknown)
  if (unknownName !== undefined) throw new errors.FST_COMET_UNKNOWN_OPTION(unknownName, knownOptionNames())

  if (typeof prefix !== 'string' || !/^\/[^?#]*[^/?#]$/.test(prefix)) {
    invalid('prefix', 'a path that starts with "/" and does not end with "/", like "/comet"', prefix)
  }
  positiveInteger('tries', tries)
  positiveNumber('sleep', sleep)
  positiveInteger('maxChannels', maxChannels)
  positiveInteger('maxPayload', maxPayload)
  positiveInteger('batchSize', batchSize)
  positiveInteger('maxReplyBytes', maxReplyBytes)
  if (maxPending !== Infinity) positiveInteger('maxPending', maxPending, 'a positive integer or Infinity')
  optionalFunction('authorizePublish', authorizePublish)
  optionalFunction('authorizeSubscribe', authorizeSubscribe)
  if (typeof serveClient !== 'boolean') invalid('serveClient', 'true or false', serveClient)
  if (logLevel !== undefined && !logLevels.includes(logLevel)) invalid('logLevel', `one of ${logLevels.map(l => `"${l}"`).join(', ')}`, logLevel)
  if (logSerializers !== undefined && (!isPlainObject(logSerializers) || Object.values(logSerializers).some(f => typeof f !== 'function'))) {
    invalid('logSerializers', 'an object of functions, like { req: request => ({ url: request.url }) }', logSerializers)
  }
  if (routeConfig !== undefined && !isPlainObject(routeConfig)) invalid('routeConfig', 'an object', routeConfig)
  if (constraints !== undefined && !isPlainObject(constraints)) invalid('constraints', 'an object, like { host: "live.example.com" }', constraints)
  if (typeof schemaHide !== 'boolean') invalid('schemaHide', 'true or false', schemaHide)

  if (engine !== undefined) {
    const engineLike = engine as unknown as Record<string, unknown> | null
    if (engineLike === null || typeof engineLike !== 'object' || engineMethods.some(m => typeof engineLike[m] !== 'function')) {
      invalid('engine', `an object with the methods ${engineMethods.join(', ')}`, engine)
    }
    if (historySize !== undefined) invalid('historySize', 'left out when an engine is given (configure the engine itself)', historySize)
    if (historyTtl !== undefined) invalid('historyTtl', 'left out when an engine is given (configure the engine itself)', historyTtl)
    if (historyBytes !== undefined) invalid('historyBytes', 'left out when an engine is given (configure the engine itself)', historyBytes)
    if (historyChannels !== undefined) invalid('historyChannels', 'left out when an engine is given (configure the engine itself)', historyChannels)
    if (idempotencyWindow !== undefined) invalid('idempotencyWindow', 'left out when an engine is given (configure the engine itself)', idempotencyWindow)
    if (idempotencyKeys !== undefined) invalid('idempotencyKeys', 'left out when an engine is given (configure the engine itself)', idempotencyKeys)
  }
  if (idempotencyWindow !== undefined) positiveNumber('idempotencyWindow', idempotencyWindow, 'a positive number of seconds')
  if (idempotencyKeys !== undefined) positiveInteger('idempotencyKeys', idempotencyKeys)
  if (historyBytes !== undefined) positiveInteger('historyBytes', historyBytes)
  const resolvedHistoryChannels = historyChannels ?? defaultHistoryChannels
  positiveInteger('historyChannels', resolvedHistoryChannels)
  const resolvedHistorySize = historySize ?? defaultHistorySize
  const resolvedHistoryTtl = historyTtl ?? defaultHistoryTtl
  positiveInteger('historySize', resolvedHistorySize)
  if (resolvedHistoryTtl !== Infinity) positiveNumber('historyTtl', resolvedHistoryTtl, 'a positive number of seconds or Infinity')

  const pollTimeoutMs = tries * sleep * 1000
  // A timer longer than 2^31 - 1 ms fires at once in Node.js, which would turn every poll into a busy loop.
  if (pollTimeoutMs > 0x7fffffff) invalid('tries', 'such that tries × sleep is at most 24 days', tries)
  const resolvedPresence = resolvePresenceOptions({ presence, presenceGrace, presenceEvents, presenceMaxMembers }, pollTimeoutMs)

  return {
    prefix,
    pollTimeoutMs,
    retryAfterSeconds: Math.ceil(sleep),
    historySize: resolvedHistorySize,
    historyTtl: resolvedHistoryTtl,
    historyBytes,
    historyChannels: resolvedHistoryChannels,
    idempotencyWindow,
    idempotencyKeys,
    maxChannels,
    maxPayload,
    maxPending,
    batchSize,
    maxReplyBytes,
    authorizePublish,
    authorizeSubscribe,
    engine,
    serveClient,
    routeOptions: {
      ...(logLevel === undefined ? {} : { logLevel }),
      ...(logSerializers === undefined ? {} : { logSerializers }),
      ...(routeConfig === undefined ? {} : { config: routeConfig }),
      ...(constraints === undefined ? {} : { constraints })
    },
    schemaHide,
    presence: resolvedPresence,
    stream
  }
}

function knownOptionNames (): string {
  return ['prefix', 'tries', 'sleep', 'historySize', 'historyTtl', 'historyBytes', 'historyChannels', 'idempotencyWindow', 'idempotencyKeys', 'maxChannels', 'maxPayload', 'maxPending',
    'batchSize', 'maxReplyBytes', 'authorizePublish', 'authorizeSubscribe', 'engine', 'serveClient', 'logLevel', 'logSerializers',
    'routeConfig', 'constraints', 'schemaHide', 'presence', 'presenceGrace', 'presenceEvents', 'presenceMaxMembers', ...streamOptionNames].join(', ')
}

function isPlainObject (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function optionalFunction (name: string, value: unknown): void {
  if (value !== undefined && typeof value !== 'function') invalid(name, 'a function (request, channel) => boolean | Promise<boolean>', value)
}
