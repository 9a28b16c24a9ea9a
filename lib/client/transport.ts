// The seam between the leader's channels and the transport that follows them from the server: the
// long-poll loop (poller.ts) today; another transport on the same cursors (a Server-Sent Events
// stream) implements the same two interfaces and slots in beside it.
import type { PollReply } from './wire.js'

/** How the transport stands with the server: 'refused' after an answer that asking again will not change. */
export type TransportState = 'idle' | 'connecting' | 'connected' | 'reconnecting' | 'refused'

/** One channel as the leader follows it for every tab that wants it. */
export interface PolledChannel {
  /** '0' (from now) or 'all' (what is held) until the server gives a cursor; or the cursor a tab asked to start after. */
  cursor: string
  confirmed: boolean
  /** A tab waits for the first answer from this cursor (one it started after): the next poll does not wait. */
  answerAtOnce: boolean
  /** The tabs that want it, with when they joined. */
  readonly members: Map<string, number>
  /** Kept without members until then: inherited from the previous leader, not yet claimed. */
  keepUntil: number
}

/** A channel as a transport asked for it: what it answers for is checked against these. */
export interface AskedChannel {
  readonly name: string
  readonly channel: PolledChannel
  /** The cursor asked from, and whether the server had given it (else this is the first answer). */
  readonly cursor: string
  readonly confirmed: boolean
  readonly answerAtOnce: boolean
}

/** What a transport reads from and reports to: the leader's channels (PolledChannels). */
export interface TransportHost {
  /** The channels to follow now, each from its cursor. */
  asked (): AskedChannel[]
  /**
   * The server's answer for channels asked: the cursors of those still followed from where they
   * were asked move on, and every tab gets the events. Nothing is lost by a transport that asks
   * again from the same cursors: cursors move only here.
   */
  answered (asked: readonly AskedChannel[], reply: PollReply): void
  stateChanged (state: TransportState): void
  /** A request failed; the transport retries by itself. */
  failed (error: Error): void
}

/** What the leader's channels ask of a transport. */
export interface Transport {
  readonly state: TransportState
  /**
   * The channels followed, or a cursor, changed. `force`: a request in flight asks from a cursor
   * that is no longer the one wanted, and must not be let finish.
   */
  changed (force: boolean): void
  /** For good: nothing is asked of the server any more. */
  stop (): void
}

/** Makes the transport of a new leader; `state` is the shared transport's as the last leader said. */
export type TransportFactory = (host: TransportHost, state: TransportState | undefined) => Transport
