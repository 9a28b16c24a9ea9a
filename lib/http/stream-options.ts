// The options of streaming (Server-Sent Events on the subscribe route, docs/streaming.md), apart
// from lib/options.ts so that the transport's settings read in one place.
import { invalid } from '../validate.js'

export interface CometStreamOptions {
  /**
   * Seconds between the comments that keep an idle stream alive, below the idle timeouts of common
   * proxies and load balancers (60 s for nginx's `proxy_read_timeout` and AWS ALB). A comment also
   * goes out at once when a stream opens, so that a client can tell a buffering proxy from a quiet
   * channel.
   * @default 20
   */
  heartbeat?: number | undefined
  /**
   * Seconds a stream stays open at most. Each stream ends at a random moment between 80 % and
   * 100 % of this (at a heartbeat), and its client resumes from its cursors: load balancers
   * rebalance, and a rolling restart does not bring every client back in the same second.
   * @default 900 (15 minutes)
   */
  streamLifetime?: number | undefined
  /**
   * Most streams open at once; past it a stream request gets 503 with Retry-After. Streams are
   * counted apart from `maxPending`: a stream holds its socket for minutes, a poll for seconds.
   * @default Infinity
   */
  maxStreams?: number | undefined
  /**
   * Most bytes written to a stream that its client has not read yet. A delivery that finds more
   * queued ends the stream (its client resumes from its cursors and loses nothing), so a client
   * that stops reading costs at most this plus one delivery (`maxReplyBytes`).
   * @default 262144 (256 KiB)
   */
  maxStreamQueueBytes?: number | undefined
}

export interface ResolvedStreamOptions {
  heartbeatMs: number
  streamLifetimeMs: number
  maxStreams: number
  maxStreamQueueBytes: number
}

export const defaultHeartbeat = 20
export const defaultStreamLifetime = 900
export const defaultMaxStreams = Infinity
export const defaultMaxStreamQueueBytes = 256 * 1024

export const streamOptionNames = ['heartbeat', 'streamLifetime', 'maxStreams', 'maxStreamQueueBytes'] as const

/** Takes the stream options out of `options`; returns them resolved, and the other options as they were. */
export function resolveStreamOptions<T extends Record<string, unknown>> (options: T & CometStreamOptions): { stream: ResolvedStreamOptions, rest: Omit<T, keyof CometStreamOptions> } {
  const {
    heartbeat = defaultHeartbeat,
    streamLifetime = defaultStreamLifetime,
    maxStreams = defaultMaxStreams,
    maxStreamQueueBytes = defaultMaxStreamQueueBytes,
    ...rest
  } = options
  seconds('heartbeat', heartbeat)
  seconds('streamLifetime', streamLifetime)
  if (streamLifetime <= heartbeat) invalid('streamLifetime', `more than heartbeat (${heartbeat} s)`, streamLifetime)
  if (maxStreams !== Infinity && (typeof maxStreams !== 'number' || !Number.isSafeInteger(maxStreams) || maxStreams < 1)) {
    invalid('maxStreams', 'a positive integer or Infinity', maxStreams)
  }
  if (typeof maxStreamQueueBytes !== 'number' || !Number.isSafeInteger(maxStreamQueueBytes) || maxStreamQueueBytes < 1) {
    invalid('maxStreamQueueBytes', 'a positive integer', maxStreamQueueBytes)
  }
  return {
    stream: { heartbeatMs: heartbeat * 1000, streamLifetimeMs: streamLifetime * 1000, maxStreams, maxStreamQueueBytes },
    rest
  }
}

function seconds (name: string, value: unknown): asserts value is number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) invalid(name, 'a positive number of seconds', value)
}
