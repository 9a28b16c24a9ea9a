// One long-poll in progress, as the bus holds it: its state, where it reads from next, and whom
// its answer goes to. The bus (bus.ts) moves it from state to state; the route only cancels it.
import type { ChannelWatcher } from '../engines/engine.js'
import type { CometBus } from './bus.js'

/** Who hears how a poll ends: the route answers its HTTP request from here. */
export interface PollAnswerer {
  answer (json: string): void
  fail (error: unknown): void
}

/**
 * One subscribe in progress, from its first read until its answer or its client's hang-up:
 * reading → waiting → answering → done, where any state before done may go to done on a hang-up.
 */
export class PendingPoll implements ChannelWatcher {
  readonly channels: readonly string[]
  /** False for a poll that answers at once, with or without news. */
  readonly wait: boolean
  /** Its client pipelined another poll behind it: answer at once, with or without news. */
  superseded = false
  /** The cursor each channel is read from next; set when the poll starts to wait. */
  nexts: readonly string[] = []
  state: 'reading' | 'waiting' | 'answering' | 'done' = 'reading'
  /** A publish came while the first reads were under way: read again before waiting. */
  missedPublish = false
  /** performance.now() when the poll times out, once it waits. */
  expiresAt = Infinity
  readonly #bus: CometBus
  #answerer: PollAnswerer | undefined
  /** How the poll ended, when it ended before anyone listened. */
  #outcome: { json: string } | { error: unknown } | undefined
  #reply: Promise<string> | undefined

  constructor (bus: CometBus, channels: readonly string[], wait: boolean, answerer: PollAnswerer | undefined) {
    this.#bus = bus
    this.channels = channels
    this.wait = wait
    this.#answerer = answerer
  }

  /**
   * The poll's JSON answer, or its error, as a promise: made on first use, since a route that
   * passes an answerer needs none.
   */
  get reply (): Promise<string> {
    this.#reply ??= new Promise((resolve, reject) => {
      const outcome = this.#outcome
      if (outcome === undefined) this.#answerer = { answer: resolve, fail: reject }
      else if ('json' in outcome) resolve(outcome.json)
      else reject(outcome.error)
    })
    return this.#reply
  }

  // answer() and fail() stay apart: one method taking an outcome object would make one for every
  // answer, on the path a publish takes for each of thousands of polls.
  /** @internal The bus's answer. */
  answer (json: string): void {
    const answerer = this.#answerer
    if (answerer === undefined) {
      this.#outcome = { json }
      return
    }
    // The poll may be kept a while after its answer (by its connection, until the next poll comes):
    // it must not keep the request and response of the answerer too.
    this.#answerer = undefined
    answerer.answer(json)
  }

  /** @internal The bus's failure. */
  fail (error: unknown): void {
    const answerer = this.#answerer
    if (answerer === undefined) {
      this.#outcome = { error }
      return
    }
    this.#answerer = undefined
    answerer.fail(error)
  }

  notify (channel: string): void {
    this.#bus.onPublish(this, channel)
  }

  /** The client hung up; nothing more is sent and nothing keeps the poll. */
  cancel (): void {
    this.#bus.onHangUp(this)
  }

  /** Answers now with what the poll has (nothing new, if it waits): its client wants another one. */
  answerNow (): void {
    this.#bus.onAnswerNow(this)
  }
}
