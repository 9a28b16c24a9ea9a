// Where a stream goes out: a subscribe asked with `Accept: text/event-stream` is answered with
// Server-Sent Events on a response held open (docs/streaming.md). The bus decides what a stream
// gets (lib/bus/stream.ts); this module writes it, beats the heartbeat, bounds what a client may
// leave unread, and ends streams on hang-up, lifetime and close.
import type { OutgoingHttpHeaders, ServerResponse } from 'node:http'
import type { Http2ServerResponse } from 'node:http2'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { CometBus } from '../bus/bus.js'
import type { BusStream, SharedDelivery, StreamEndReason, StreamSink } from '../bus/stream.js'
import type { ChannelBacklog, ReadPosition } from '../engines/engine.js'
import type { CometMetrics } from '../metrics.js'
import { readPosition, type Subscription } from '../protocol/poll.js'
import type { ResolvedStreamOptions } from './stream-options.js'
import { formatStreamFrames, formatStreamId, heartbeatFrame, parseStreamId, streamOpenFrame, type StreamFrames } from '../protocol/stream.js'
import { cancelOnHangUp, type HeldPoll } from './hang-up.js'

/** A stream ends at a random moment in the last fifth of its lifetime. */
const lifetimeJitter = 0.2

// An Accept header naming text/event-stream (EventSource sends exactly that), unless with q=0.
const acceptsEventStream = /(?:^|,)\s*text\/event-stream\s*(?:;(?!\s*q\s*=\s*0(?:\.0*)?\s*(?:[,;]|$))[^,]*)?(?:,|$)/i

/** True when a subscribe asks for a stream rather than a long-poll. */
export function wantsStream (request: FastifyRequest): boolean {
  const accept = request.headers.accept
  return accept !== undefined && accept.includes('text/event-stream') && acceptsEventStream.test(accept)
}

/** The open streams of one plugin instance and their one heartbeat timer. */
export class StreamHub {
  readonly #bus: CometBus
  readonly #metrics: CometMetrics
  readonly options: ResolvedStreamOptions
  readonly #streams = new Set<SseStream>()
  #ticker: NodeJS.Timeout | undefined

  constructor (bus: CometBus, metrics: CometMetrics, options: ResolvedStreamOptions) {
    this.#bus = bus
    this.#metrics = metrics
    this.options = options
  }

  get metrics (): CometMetrics {
    return this.#metrics
  }

  /**
   * Opens a stream for a subscribe whose query (and authorization) the route has checked: from
   * the cursors of its Last-Event-ID where it has one, else from the query's. `settled` is called
   * once the stream is open or has failed with an error reply.
   */
  open (request: FastifyRequest, reply: FastifyReply, subscription: Subscription, settled?: () => void): void {
    const header = request.headers['last-event-id']
    let positions: readonly ReadPosition[] = subscription.positions
    if (typeof header === 'string' && header !== '') {
      const cursors = parseStreamId(header, subscription.channels)
      positions = subscription.channels.map((channel, i) => {
        const cursor = cursors.get(channel)
        return cursor === undefined ? subscription.positions[i] as ReadPosition : readPosition(cursor)
      })
    }
    const sse = new SseStream(this, reply, subscription.channels, settled)
    const stream = this.#bus.stream({ channels: subscription.channels, positions }, sse)
    sse.stream = stream
    stream.start()
    cancelOnHangUp(request, reply, sse)
  }

  /** @internal */
  add (stream: SseStream): void {
    this.#streams.add(stream)
    // One timer for every stream, as the bus has one for every poll; it lets the process exit.
    this.#ticker ??= setInterval(() => this.#beat(), this.options.heartbeatMs).unref()
  }

  /** @internal */
  remove (stream: SseStream): void {
    if (this.#streams.delete(stream) && this.#streams.size === 0) {
      clearInterval(this.#ticker)
      this.#ticker = undefined
    }
  }

  #beat (): void {
    const now = performance.now()
    for (const stream of this.#streams) stream.beat(now)
  }
}

type RawResponse = ServerResponse | Http2ServerResponse

/** One stream's response: what the bus hands over, written as SSE. */
class SseStream implements StreamSink, HeldPoll {
  stream: BusStream | undefined
  readonly #hub: StreamHub
  readonly #reply: FastifyReply
  readonly #raw: RawResponse
  readonly #channels: readonly string[]
  #settled: (() => void) | undefined
  #state: 'opening' | 'open' | 'done' = 'opening'
  /** performance.now() past which the next heartbeat ends the stream. */
  #endsAt = Infinity
  #waitingForDrain = false

  constructor (hub: StreamHub, reply: FastifyReply, channels: readonly string[], settled: (() => void) | undefined) {
    this.#hub = hub
    this.#reply = reply
    this.#raw = reply.raw
    this.#channels = channels
    this.#settled = settled
  }

  open (cursors: readonly string[]): void {
    const reply = this.#reply
    reply.hijack()
    // Headers set by hooks (CORS, say) go out too; Fastify does not send a hijacked reply itself.
    const raw = this.#raw as ServerResponse
    raw.writeHead(200, {
      ...reply.getHeaders() as OutgoingHttpHeaders,
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      // nginx buffers a proxied response unless told not to: the stream would arrive in lumps.
      'x-accel-buffering': 'no'
    })
    this.#state = 'open'
    const { streamLifetimeMs } = this.#hub.options
    this.#endsAt = performance.now() + streamLifetimeMs * (1 - lifetimeJitter * Math.random())
    this.#hub.add(this)
    this.#hub.metrics.onStreamOpen(this.#channels)
    const frame = streamOpenFrame(formatStreamId(this.#channels, cursors))
    this.#write(frame, 1, frame.length)
    this.#settle()
  }

  deliver (backlogs: readonly ChannelBacklog[], before: readonly string[], shared: SharedDelivery | undefined): boolean {
    if (this.#raw.writableLength > this.#hub.options.maxStreamQueueBytes) {
      this.#end('slow')
      return false
    }
    let frames: StreamFrames
    if (shared === undefined) frames = formatStreamFrames(this.#channels, backlogs, before)
    else frames = (shared.encoded ??= formatStreamFrames(this.#channels, backlogs, before)) as StreamFrames
    return this.#write(frames.text, frames.messages, frames.bytes)
  }

  fail (error: unknown): void {
    this.#state = 'done'
    this.#reply.send(error instanceof Error ? error : new Error(String(error)))
    this.#settle()
  }

  end (reason: StreamEndReason): void {
    this.#end(reason)
  }

  /** The client hung up. */
  cancel (): void {
    this.#end('hang-up')
  }

  /** The client sent another request behind the stream on its HTTP/1 connection: end the stream so that it is served. */
  answerNow (): void {
    this.#end('hang-up')
  }

  /** @internal The hub's heartbeat. */
  beat (now: number): void {
    if (now >= this.#endsAt) {
      this.#end('lifetime')
    } else if (this.#raw.writableLength > this.#hub.options.maxStreamQueueBytes) {
      this.#end('slow')
    } else {
      this.#write(heartbeatFrame, 0, heartbeatFrame.length)
      this.stream?.refresh()
    }
  }

  #write (text: string, messages: number, bytes: number): boolean {
    this.#hub.metrics.onStreamWrite(messages, bytes)
    if ((this.#raw as ServerResponse).write(text)) return true
    if (!this.#waitingForDrain) {
      this.#waitingForDrain = true
      this.#raw.once('drain', () => {
        this.#waitingForDrain = false
        this.stream?.resume()
      })
    }
    return false
  }

  #end (reason: StreamEndReason): void {
    if (this.#state === 'done') return
    const wasOpen = this.#state === 'open'
    this.#state = 'done'
    this.stream?.cancel()
    this.#settle()
    if (!wasOpen) return
    this.#hub.remove(this)
    const raw = this.#raw
    this.#hub.metrics.onStreamEnd(this.#channels, reason, raw.writableLength)
    if (reason === 'hang-up' && raw.destroyed) return
    // A client that does not read would hold a politely ended response, and close(), forever.
    if (reason !== 'slow') raw.end()
    if (raw.writableLength > 0 || reason === 'slow') raw.destroy()
  }

  #settle (): void {
    const settled = this.#settled
    this.#settled = undefined
    settled?.()
  }
}
