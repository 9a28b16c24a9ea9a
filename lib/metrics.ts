// What an operator measures: the counters and the latency histogram behind `fastify.comet.stats()`,
// and the node:diagnostics_channel channels that tools subscribe to without a dependency. The bus
// and the routes call the `on…` methods; each is a few integer additions, and a channel's message
// is built only when someone subscribes to it.
import diagnostics from 'node:diagnostics_channel'
import { streamEndReasons, type StreamEndReason } from './bus/stream.js'
import type { EngineHealth } from './engines/engine.js'

/**
 * Why a poll was answered: `events` when the reply carries events or a gap (`s: 1`); otherwise
 * (`s: 0`) `timeout` after `tries` × `sleep`, `wait0` for a `wait=0` poll with nothing new, and
 * `close` when the server closes, `superseded` when the client pipelined another poll behind it on
 * the same connection.
 */
export type AnswerReason = 'events' | 'timeout' | 'wait0' | 'close' | 'superseded'

export const answerReasons: readonly AnswerReason[] = ['events', 'timeout', 'wait0', 'close', 'superseded']

/**
 * Upper bounds, in milliseconds, of the publish-to-answer histogram's buckets; the last bucket,
 * `Infinity`, is implied. From a same-turn answer (well under 1 ms) to a slow engine.
 */
export const latencyBucketsMs: readonly number[] = [0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000]

/** A cumulative histogram in Prometheus's sense: each bucket counts the observations at most `le`. */
export interface LatencyHistogram {
  /** One per bound of `latencyBucketsMs`, then `Infinity`; `count` is cumulative. */
  readonly buckets: ReadonlyArray<{ readonly le: number, readonly count: number }>
  /** Sum of all observations, in milliseconds. */
  readonly sum: number
  /** Number of observations. */
  readonly count: number
}

export interface CometStats {
  /** Channels the engine holds state for (a gauge). */
  channels: number
  /** Long-polls waiting right now (a gauge). */
  pending: number
  /** Events published through this instance (a counter, like all that follow). */
  published: number
  /** Events handed to polls, counted once per poll that received them. */
  delivered: number
  /** Polls answered, by why they were answered. */
  answered: Record<AnswerReason, number>
  /** Polls whose client hung up while they waited (or before they were answered). */
  hangUps: number
  /** Channels named in the `gap` of a reply, counted once per reply. */
  gaps: number
  /** Error replies of the plugin's routes, by error `code` (or the status code when the error has none). */
  errors: Record<string, number>
  /**
   * Milliseconds from the moment the bus learns of a publish (for the memory engine, the publish
   * itself; for an engine across processes, its notification) to the answer of each poll it woke.
   */
  publishToAnswerMs: LatencyHistogram
  /** The engine's connection, for an engine backed by a server (one that has `health()`). */
  engine?: EngineHealth
  /** Streams (Server-Sent Events, docs/streaming.md). */
  streams: StreamStats
}

export interface StreamStats {
  /** Streams open right now (a gauge). */
  open: number
  /** SSE messages sent (events, gaps and the cursors a stream opens with), over all streams. */
  messages: number
  /** Bytes written to streams, heartbeats included. */
  bytes: number
  /** Streams ended, by why. */
  ended: Record<StreamEndReason, number>
}

/**
 * The node:diagnostics_channel channels the plugin publishes on. A message is built and published
 * only while the channel has subscribers: without any, the cost is one boolean check per event.
 */
export const diagnosticsChannels = {
  /** `{ channel, id }`: an event was published through this instance. */
  publish: 'fastify-comet:publish',
  /** `{ channels, reason, events, gaps, latencyMs }`: a poll was answered (`latencyMs` only for a poll woken by a publish). */
  answer: 'fastify-comet:answer',
  /** `{ channels }`: a client hung up before its poll was answered. */
  hangUp: 'fastify-comet:hang-up',
  /** `{ code, statusCode, error }`: a route of the plugin answered with an error. */
  error: 'fastify-comet:error',
  /** `{ channels }`: a stream opened. */
  streamOpen: 'fastify-comet:stream-open',
  /** `{ channels, reason, queuedBytes }`: a stream ended; `queuedBytes` were written but not yet read by its client. */
  streamEnd: 'fastify-comet:stream-end'
} as const

export interface PublishMessage { channel: string, id: string }
export interface AnswerMessage { channels: readonly string[], reason: AnswerReason, events: number, gaps: number, latencyMs: number | undefined }
export interface HangUpMessage { channels: readonly string[] }
export interface ErrorMessage { code: string, statusCode: number, error: Error }
export interface StreamOpenMessage { channels: readonly string[] }
export interface StreamEndMessage { channels: readonly string[], reason: StreamEndReason, queuedBytes: number }

const publishChannel = diagnostics.channel(diagnosticsChannels.publish)
const answerChannel = diagnostics.channel(diagnosticsChannels.answer)
const hangUpChannel = diagnostics.channel(diagnosticsChannels.hangUp)
const errorChannel = diagnostics.channel(diagnosticsChannels.error)
const streamOpenChannel = diagnostics.channel(diagnosticsChannels.streamOpen)
const streamEndChannel = diagnostics.channel(diagnosticsChannels.streamEnd)

export class CometMetrics {
  #published = 0
  #delivered = 0
  #hangUps = 0
  #gaps = 0
  readonly #answered: Record<AnswerReason, number> = { events: 0, timeout: 0, wait0: 0, close: 0, superseded: 0 }
  readonly #errors = new Map<string, number>()
  // Not cumulative here: an observation adds to one bucket; stats() accumulates.
  readonly #bucketCounts = new Array<number>(latencyBucketsMs.length + 1).fill(0)
  #latencySum = 0
  #latencyCount = 0
  #streamsOpen = 0
  #streamMessages = 0
  #streamBytes = 0
  readonly #streamsEnded = Object.fromEntries(streamEndReasons.map(reason => [reason, 0])) as Record<StreamEndReason, number>

  onPublish (channel: string, id: string): void {
    this.#published++
    if (publishChannel.hasSubscribers) publishChannel.publish({ channel, id } satisfies PublishMessage)
  }

  /** `latencyMs`: for a poll that a publish woke, the milliseconds since the bus learnt of it. */
  onAnswer (channels: readonly string[], reason: AnswerReason, events: number, gaps: number, latencyMs: number | undefined): void {
    this.#answered[reason]++
    this.#delivered += events
    this.#gaps += gaps
    if (latencyMs !== undefined) this.#observe(latencyMs)
    if (answerChannel.hasSubscribers) answerChannel.publish({ channels, reason, events, gaps, latencyMs } satisfies AnswerMessage)
  }

  onHangUp (channels: readonly string[]): void {
    this.#hangUps++
    if (hangUpChannel.hasSubscribers) hangUpChannel.publish({ channels } satisfies HangUpMessage)
  }

  /** An error on its way to a reply, before Fastify's error handler sets the status as below. */
  onError (error: Error & { code?: string, statusCode?: number }): void {
    const statusCode = typeof error.statusCode === 'number' && error.statusCode >= 400 && error.statusCode <= 599 ? error.statusCode : 500
    const code = typeof error.code === 'string' ? error.code : String(statusCode)
    this.#errors.set(code, (this.#errors.get(code) ?? 0) + 1)
    if (errorChannel.hasSubscribers) errorChannel.publish({ code, statusCode, error } satisfies ErrorMessage)
  }

  onStreamOpen (channels: readonly string[]): void {
    this.#streamsOpen++
    if (streamOpenChannel.hasSubscribers) streamOpenChannel.publish({ channels } satisfies StreamOpenMessage)
  }

  /** One write to a stream: `messages` SSE messages (none for a heartbeat) in `bytes` bytes. */
  onStreamWrite (messages: number, bytes: number): void {
    this.#streamMessages += messages
    this.#streamBytes += bytes
  }

  onStreamEnd (channels: readonly string[], reason: StreamEndReason, queuedBytes: number): void {
    this.#streamsOpen--
    this.#streamsEnded[reason]++
    if (streamEndChannel.hasSubscribers) streamEndChannel.publish({ channels, reason, queuedBytes } satisfies StreamEndMessage)
  }

  stats (channels: number, pending: number, health: EngineHealth | undefined): CometStats {
    let cumulative = 0
    const buckets = this.#bucketCounts.map((count, i) => {
      cumulative += count
      return { le: latencyBucketsMs[i] ?? Infinity, count: cumulative }
    })
    const stats: CometStats = {
      channels,
      pending,
      published: this.#published,
      delivered: this.#delivered,
      answered: { ...this.#answered },
      hangUps: this.#hangUps,
      gaps: this.#gaps,
      errors: Object.fromEntries(this.#errors),
      publishToAnswerMs: { buckets, sum: this.#latencySum, count: this.#latencyCount },
      streams: { open: this.#streamsOpen, messages: this.#streamMessages, bytes: this.#streamBytes, ended: { ...this.#streamsEnded } }
    }
    if (health !== undefined) stats.engine = { connected: health.connected, reconnections: health.reconnections, healedNotifications: health.healedNotifications }
    return stats
  }

  #observe (ms: number): void {
    let i = 0
    while (i < latencyBucketsMs.length && ms > (latencyBucketsMs[i] as number)) i++
    this.#bucketCounts[i] = (this.#bucketCounts[i] as number) + 1
    this.#latencySum += ms
    this.#latencyCount++
  }
}
