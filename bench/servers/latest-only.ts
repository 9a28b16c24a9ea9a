// The floors' design, shared by floor.ts (bare node:http) and fastify-floor.ts (a plain Fastify
// route), which differ only in how a poll is answered and how its hang-up is heard. No history: per
// channel only the latest message, numbered, so a poll that comes back with the number it was
// given is answered at once if it missed exactly that one, and the driver sees a gap if it missed
// more. Each parked poll has its own timeout timer, as any long-poll needs.
//
//   GET /sub?ch=<channel>[&after=<n>]  →  {"c":<n>,"d":<message>}, or {"c":<n>} on timeout
import { pollTimeoutSeconds } from './common.js'

/** How one server answers a parked poll, and hears that its client hung up. */
export interface PollTransport<Poll> {
  answer: (poll: Poll, body: string) => void
  onHangUp: (poll: Poll, listener: () => void) => void
}

interface Latest { readonly number: number, readonly reply: string }

export class LatestOnly<Poll> {
  readonly #parked = new Map<string, Set<Poll>>()
  readonly #latest = new Map<string, Latest>()
  readonly #transport: PollTransport<Poll>

  constructor (transport: PollTransport<Poll>) {
    this.#transport = transport
  }

  /** A poll on `channel`, after the message numbered `after` (or from now). */
  subscribe (poll: Poll, channel: string, after: string | undefined): void {
    const last = this.#latest.get(channel)
    if (after !== undefined && last !== undefined && last.number > Number(after)) {
      this.#transport.answer(poll, last.reply)
      return
    }
    let waiting = this.#parked.get(channel)
    if (waiting === undefined) this.#parked.set(channel, waiting = new Set())
    const set = waiting
    const timer = setTimeout(() => {
      set.delete(poll)
      this.#transport.answer(poll, `{"c":${after ?? last?.number ?? 0}}`)
    }, pollTimeoutSeconds * 1000)
    set.add(poll)
    this.#transport.onHangUp(poll, () => {
      clearTimeout(timer)
      set.delete(poll)
    })
  }

  publish (channel: string, message: unknown): void {
    const number = (this.#latest.get(channel)?.number ?? 0) + 1
    const reply = `{"c":${number},"d":${JSON.stringify(message)}}`
    this.#latest.set(channel, { number, reply })
    const waiting = this.#parked.get(channel)
    if (waiting === undefined) return
    this.#parked.delete(channel)
    // Each answer's hang-up listener clears its timer and leaves the set, no longer the channel's.
    for (const poll of waiting) this.#transport.answer(poll, reply)
  }
}
