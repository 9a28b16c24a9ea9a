// The long-poll transport: one subscribe at a time for every channel the leader follows, a
// watchdog for connections that died silently, and backoff after failures.
import { backoffDelay, backoffWait } from './backoff.js'
import { CometClientError, isRefusal } from './errors.js'
import type { CometRetryOptions } from './types.js'
import type { Transport, TransportHost, TransportState } from './transport.js'
import { type PollReply, pollReplyOf, serverWaitOf, subscribeUrl } from './wire.js'

// A waiting poll answered with nothing faster than this is a server that will not wait (one that is
// closing, say): back off, rather than ask again at once, again and again.
const quickEmptyAnswerMs = 100

export interface PollerOptions {
  fetch: typeof fetch
  base: URL
  retry: Required<CometRetryOptions>
  timeoutMargin: number
}

export class Poller implements Transport {
  readonly #host: TransportHost
  readonly #options: PollerOptions
  #state: TransportState
  #running = false
  #stopped = false
  /** The poll in flight: aborted for a change of channels, or by the watchdog. */
  #inFlight: { controller: AbortController, waits: boolean } | undefined
  /** Ends the backoff wait early. */
  #wakeUp: (() => void) | undefined
  /** Failures in a row. */
  #failures = 0
  /** How long the server lets a poll wait, from its Comet-Wait header. */
  #serverWaitMs: number | undefined
  /** No poll answered yet: the first one answers at once, and tells the server's wait. */
  #fresh = true

  constructor (host: TransportHost, options: PollerOptions, state: TransportState | undefined) {
    this.#host = host
    this.#options = options
    // A tab taking over from a connected leader stays connected, unless its first poll fails.
    this.#state = state ?? 'idle'
  }

  get state (): TransportState {
    return this.#state
  }

  // The set of channels changed: a waiting poll asks for the wrong ones. Aborting it loses nothing:
  // cursors move only when an answer is handled, so the next poll asks again from them. A poll that
  // answers at once is let finish (its answer is applied to the channels still polled), unless it
  // asks from a cursor that is no longer the one wanted.
  changed (force: boolean): void {
    if (this.#inFlight !== undefined && (this.#inFlight.waits || force)) this.#inFlight.controller.abort()
    if (this.#running || this.#stopped) return
    this.#running = true
    // After the current task, so that several subscribes in a row make one poll.
    queueMicrotask(() => { void this.#loop() })
  }

  stop (): void {
    this.#stopped = true
    this.#inFlight?.controller.abort()
    this.#wakeUp?.()
  }

  async #loop (): Promise<void> {
    try {
      while (!this.#stopped && this.#host.asked().length > 0) {
        if (this.#state === 'idle') this.#setState('connecting')
        await this.#pollOnce()
      }
    } finally {
      this.#running = false
    }
    if (!this.#stopped) this.#setState('idle')
  }

  async #pollOnce (): Promise<void> {
    const asked = this.#host.asked()
    // Until the server has answered for every channel, and after a failure, it answers at once.
    const wait = !this.#fresh && this.#state === 'connected' && asked.every(({ confirmed, answerAtOnce }) => confirmed && !answerAtOnce)
    const url = subscribeUrl(this.#options.base, asked, wait)

    const controller = new AbortController()
    const flight = { controller, waits: wait }
    this.#inFlight = flight
    // The watchdog: a connection that died silently (a NAT or a mobile network dropping it) never
    // answers. Without the server's wait known, a waiting poll has none.
    const limit = wait ? (this.#serverWaitMs === undefined ? undefined : this.#serverWaitMs + this.#options.timeoutMargin) : this.#options.timeoutMargin
    let timedOut = false
    const watchdog = limit === undefined
      ? undefined
      : setTimeout(() => {
        timedOut = true
        controller.abort()
      }, limit)
    const started = Date.now()
    let reply: PollReply | undefined
    let failure: unknown
    try {
      const response = await this.#options.fetch(url, { signal: controller.signal, headers: { accept: 'application/json' } })
      reply = await pollReplyOf(response)
      this.#serverWaitMs = serverWaitOf(response) ?? this.#serverWaitMs
    } catch (error) {
      failure = error
    } finally {
      clearTimeout(watchdog)
      if (this.#inFlight === flight) this.#inFlight = undefined
    }
    // Aborted for a change of channels, or by stop(), perhaps after the answer was read: the
    // next poll asks again from the same cursors, or the loop ends.
    if (controller.signal.aborted && !timedOut) return
    if (reply === undefined && timedOut) {
      failure = new CometClientError(`fastify-comet client: no answer to a poll within ${String(limit)} ms; the connection is taken for dead and the poll made again`, 'FST_COMET_CLIENT_TIMEOUT')
    }

    if (reply === undefined) {
      this.#failures++
      this.#setState(isRefusal(failure) ? 'refused' : 'reconnecting')
      this.#host.failed(failure as Error)
      return await this.#backOff(failure)
    }
    const quickEmptyAnswer = wait && reply.s === 0 && Date.now() - started < quickEmptyAnswerMs
    this.#failures = quickEmptyAnswer ? this.#failures + 1 : 0
    this.#fresh = false
    this.#setState('connected')
    this.#host.answered(asked, reply)
    if (quickEmptyAnswer) await this.#backOff(undefined)
  }

  async #backOff (error: unknown): Promise<void> {
    const delay = backoffDelay(this.#options.retry, this.#failures, error)
    if (this.#stopped) return
    const { done, wakeUp } = backoffWait(delay)
    this.#wakeUp = wakeUp
    await done
    this.#wakeUp = undefined
  }

  #setState (state: TransportState): void {
    if (state === this.#state) return
    this.#state = state
    this.#host.stateChanged(state)
  }
}
