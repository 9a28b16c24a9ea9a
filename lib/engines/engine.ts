// The contract between the long-poll bus and where events live. The in-memory engine implements it
// today; an engine on Redis (or anything with ordered history and notifications) implements the
// same few methods, and the routes and the bus do not change. test/engine-contract.ts holds the
// tests every engine must pass.
import type { PresenceStore, PresenceStoreOptions } from '../presence/store.js'

/** One published event as an engine keeps it. */
export interface StoredEvent {
  /** The event's cursor: an opaque string of at most 64 URL-safe characters. */
  readonly id: string
  /** The event's data, already serialized as JSON, so that a fan-out to many polls serializes once. */
  readonly json: string
}

/** Where a read starts: just after a cursor the engine returned earlier, or one of these two places. */
export const fromNow: unique symbol = Symbol('fastify-comet.fromNow')
export const fromOldest: unique symbol = Symbol('fastify-comet.fromOldest')
export type ReadPosition = typeof fromNow | typeof fromOldest | string

/** What a read finds on one channel. */
export interface ChannelBacklog {
  /** Events after the position, oldest first, at most the read's limit. */
  readonly events: readonly StoredEvent[]
  /**
   * The cursor to read from next time: the id of the last event in `events`, or, when there is
   * none, a cursor that every later event of the channel comes after.
   */
  readonly next: string
  /** True when events after the position are no longer held (evicted, expired, or the cursor is from another engine instance). */
  readonly gap: boolean
}

/** What a publish with an idempotency key did. */
export interface IdempotentPublish {
  /** The new event's id; on a replay, the id the first publish with the key got. */
  readonly id: string
  /** True when the key had been used on the channel within the engine's window: nothing was stored. */
  readonly replayed: boolean
}

/** Told when an event is published on a channel it watches. */
export interface ChannelWatcher {
  notify (channel: string): void
}

export interface CometEngine {
  /** Stores an event and notifies the channel's watchers; resolves to the event's id. */
  publish (channel: string, json: string): Promise<string>
  /**
   * Publishes as publish() does, unless `idempotencyKey` was used on this channel within the
   * engine's window: then it stores nothing, notifies no one and resolves to the first publish's
   * id with `replayed: true`, or rejects with FST_COMET_IDEMPOTENCY_KEY_REUSED (422) when that
   * publish's JSON was different. Atomic: publishes racing with one key store one event, across
   * every process an engine on a server is shared by. The key is already checked by the bus
   * (1 to 128 URL-safe characters). Optional: an engine without it has keyed publishes refused
   * with FST_COMET_IDEMPOTENCY_UNSUPPORTED.
   */
  publishIdempotent? (channel: string, json: string, idempotencyKey: string): Promise<IdempotentPublish>
  /**
   * Reads a channel's held events after a position. Throws an error with statusCode 400 for a
   * cursor that this kind of engine could never have returned. May answer synchronously.
   */
  read (channel: string, position: ReadPosition, limit: number): ChannelBacklog | Promise<ChannelBacklog>
  /**
   * Starts notifying a watcher of publishes on a channel. Watch before reading, so no publish falls
   * in between. An engine that must ask a server first (Redis: SUBSCRIBE) returns a promise, and
   * the read waits for it; one that watches at once returns nothing, so the bus adds no promise.
   * It may reject with FST_COMET_ENGINE_UNAVAILABLE; the watcher is then unwatched by the caller.
   */
  watch (channel: string, watcher: ChannelWatcher): void | Promise<void>
  unwatch (channel: string, watcher: ChannelWatcher): void
  /** How many channels the engine holds state for right now. */
  channelCount (): number
  /** Releases timers and connections. The plugin calls it only on an engine it created. */
  close (): Promise<void>
  /**
   * The state of the engine's connection to a shared store, for metrics. Engines that live in the
   * process (MemoryEngine) leave it out: they are always connected.
   */
  health? (): EngineHealth
  /**
   * Starts telling a logger what the server's log must show of the engine's connection to its
   * store: that it cannot connect at start, that the connection is lost, that it is back. Once per
   * change, and at once if it is down when attached. Returns how to stop. The plugin attaches
   * `fastify.log` when it registers and stops at close; each server on one engine gets each line.
   * Engines that live in the process (MemoryEngine) leave it out.
   */
  attachLogger? (logger: EngineLogger): () => void
  /**
   * Where the members of channels live, for the `presence` option (lib/presence/store.ts): their
   * joins and leaves are events of this engine, on `<channel>@presence`. An engine without it
   * cannot be used with `presence`.
   */
  presenceStore? (options: PresenceStoreOptions): PresenceStore
}

/** What an engine needs of a logger; `fastify.log` (pino) is one. */
export interface EngineLogger {
  error (fields: object, message: string): void
  info (fields: object, message: string): void
}

/** What an engine backed by a server (Redis) reports of its connection. */
export interface EngineHealth {
  /** True while the engine can publish and read. */
  readonly connected: boolean
  /** Times the connection was lost and made again since the engine started. */
  readonly reconnections: number
  /** Waiting polls woken after a reconnection because their channel had moved while the engine was cut off. */
  readonly healedNotifications: number
}
