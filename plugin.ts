// The plugin entry: reads the options, creates the bus on an engine, mounts the routes, ties the
// bus to the server's lifecycle and decorates the instance with `fastify.comet`.
import type { FastifyInstance, FastifyPluginAsync } from 'fastify'
import fp from 'fastify-plugin'
import { CometBus, type ChannelHistory, type HistoryOptions, type PublishOptions, type PublishResult } from './lib/bus/bus.js'
import { clientRoute } from './lib/http/client-route.js'
import { closeIdleConnectionsUntilClosed } from './lib/http/drain.js'
import { fromNow, fromOldest, type CometEngine } from './lib/engines/engine.js'
import { errors } from './lib/errors.js'
import { MemoryEngine } from './lib/engines/memory.js'
import { CometMetrics, diagnosticsChannels, type CometStats } from './lib/metrics.js'
import { resolveOptions, type CometOptions, type ResolvedCometOptions } from './lib/options.js'
import { cometRoutes } from './lib/http/routes.js'
import { invalid } from './lib/validate.js'
import { Presence } from './lib/presence/presence.js'
import type { PresenceSnapshotAt } from './lib/presence/store.js'

export interface Comet {
  /**
   * Publishes `data` (any JSON value) on a channel and wakes its waiting polls. With an
   * `idempotencyKey`, a repeat within the engine's window stores nothing and resolves to the first
   * publish's id with `replayed: true`; the same key with other data rejects with
   * FST_COMET_IDEMPOTENCY_KEY_REUSED. See docs/publishing.md.
   */
  publish (channel: string, data?: unknown, options?: PublishOptions): Promise<PublishResult>
  /**
   * The channel's position: a cursor that every event published from now on comes after. Read it
   * before loading what a page shows, and let the page subscribe from it: nothing published in
   * between is missed (or the page is told with a gap).
   */
  position (channel: string): Promise<string>
  /**
   * The events the engine holds on a channel after a cursor (or from the oldest), at most `limit`
   * (default `batchSize`), with `gap` when some after the cursor are no longer held, as a poll has.
   */
  history (channel: string, options?: HistoryOptions): Promise<ChannelHistory>
  /** Gauges and counters of this instance, and the publish-to-answer histogram: see the README's Metrics. */
  stats (): CometStats
  /**
   * Who is on a channel: `count` members, the longest-present first in `members` (at most
   * `presenceMaxMembers`), and with `presenceEvents` the cursor of its joins and leaves at that
   * instant. Rejects with FST_COMET_PRESENCE_OFF without the `presence` option.
   */
  presence (channel: string): Promise<PresenceSnapshotAt>
}

declare module 'fastify' {
  interface FastifyInstance {
    comet: Comet
  }
}

const cometPlugin: FastifyPluginAsync<CometOptions> = async (fastify, rawOptions) => {
  // Before Fastify's own FST_ERR_DEC_ALREADY_PRESENT (or a duplicated route), which would not say
  // what to do. An encapsulated context of its own may hold another, whose fastify.comet shadows this one.
  if (Object.hasOwn(fastify, 'comet')) throw new errors.FST_COMET_ALREADY_REGISTERED()
  const options = resolveOptions(rawOptions)
  const ownsEngine = options.engine === undefined
  const engine: CometEngine = options.engine ?? new MemoryEngine({
    historySize: options.historySize,
    historyTtl: options.historyTtl,
    historyBytes: options.historyBytes,
    historyChannels: options.historyChannels,
    idempotencyWindow: options.idempotencyWindow,
    idempotencyKeys: options.idempotencyKeys
  })
  const metrics = new CometMetrics()
  const bus = new CometBus(engine, { ...options, maxStreams: options.stream.maxStreams }, metrics)
  const presence = startPresence(engine, options, fastify)

  // Registered as a child so that its hooks stay on the plugin's own routes.
  await fastify.register(cometRoutes, { prefix: options.prefix, bus, metrics, options, presence })
  if (options.serveClient) await fastify.register(clientRoute, { prefix: options.prefix, options })

  fastify.decorate('comet', {
    publish: presence === undefined
      ? (channel: string, data?: unknown, publishOptions?: PublishOptions) => bus.publish(channel, data, publishOptions)
      : async (channel: string, data?: unknown, publishOptions?: PublishOptions) => {
        presence.checkPublish(channel)
        return bus.publish(channel, data, publishOptions)
      },
    position: (channel: string) => bus.position(channel),
    history: (channel: string, historyOptions?: HistoryOptions) => bus.history(channel, historyOptions),
    stats: () => bus.stats(),
    presence: async (channel: string) => {
      if (presence === undefined) throw new errors.FST_COMET_PRESENCE_OFF()
      return presence.snapshot(channel)
    }
  } satisfies Comet)

  // Waiting polls are answered before the server stops taking connections, so close() is prompt.
  fastify.addHook('preClose', async () => {
    bus.close()
    presence?.close()
    closeIdleConnectionsUntilClosed(fastify.server)
  })
  // What the server's log must show of the engine's connection (Redis down, back), without options.
  const detachLogger = engine.attachLogger?.(fastify.log)
  if (detachLogger !== undefined) fastify.addHook('onClose', async () => detachLogger())
  if (ownsEngine) fastify.addHook('onClose', async () => engine.close())
}

function startPresence (engine: CometEngine, { presence }: ResolvedCometOptions, fastify: FastifyInstance): Presence | undefined {
  if (presence === undefined) return undefined
  if (typeof engine.presenceStore !== 'function') invalid('presence', 'left out with an engine that has no presenceStore() (the memory and Redis engines have one)', presence.hook)
  return new Presence(engine.presenceStore({ graceMs: presence.graceMs }), presence, (error, channel) => {
    fastify.log.warn({ err: error, channel }, 'fastify-comet: presence could not be written; members may lapse until the engine is back')
  })
}

type FastifyComet = FastifyPluginAsync<CometOptions> & {
  default: FastifyComet
  fastifyComet: FastifyComet
  errors: typeof errors
  MemoryEngine: typeof MemoryEngine
  fromNow: typeof fromNow
  fromOldest: typeof fromOldest
  diagnosticsChannels: typeof diagnosticsChannels
}

// require('fastify-comet') returns the plugin itself (through the 'module.exports' export below),
// so the other exports ride on it too: require('fastify-comet').errors works as import { errors }.
const fastifyComet = Object.assign(fp(cometPlugin, { fastify: '5.x', name: 'fastify-comet' }), {
  errors,
  MemoryEngine,
  fromNow,
  fromOldest,
  diagnosticsChannels
}) as FastifyComet
fastifyComet.default = fastifyComet
fastifyComet.fastifyComet = fastifyComet

export default fastifyComet
export { fastifyComet, fastifyComet as 'module.exports' }
export type { CometOptions, CometAuthorizer } from './lib/options.js'
export type { AnswerReason, CometStats, LatencyHistogram, AnswerMessage, ErrorMessage, HangUpMessage, PublishMessage, StreamStats, StreamOpenMessage, StreamEndMessage } from './lib/metrics.js'
export type { StreamEndReason } from './lib/bus/stream.js'
export type { CometEngine, ChannelBacklog, ChannelWatcher, EngineHealth, EngineLogger, IdempotentPublish, ReadPosition, StoredEvent } from './lib/engines/engine.js'
export type { ChannelHistory, HistoryOptions, PublishOptions, PublishResult } from './lib/bus/bus.js'
export { fromNow, fromOldest, MemoryEngine, errors, diagnosticsChannels }
export type { MemoryEngineOptions } from './lib/engines/memory.js'
export type { CometPresenceHook, PresenceIdentity } from './lib/presence/identity.js'
export type { PresenceEntry, PresenceMember, PresenceSnapshot, PresenceSnapshotAt, PresenceStore } from './lib/presence/store.js'
