// The leader's channels: which tabs want each channel, and from which cursor it is followed. It
// answers the tabs' requests, and hands the set to a transport (the poll loop) that follows it.
import { cursorAllHeld, cursorNow } from '../protocol/wire-format.js'
import type { Batch, MemberMessage, Message } from './messages.js'
import type { AskedChannel, PolledChannel, Transport, TransportFactory, TransportState } from './transport.js'
import type { PollReply } from './wire.js'

/** How long a new leader keeps following the channels it inherited before a tab claims them. */
export const inheritedGraceMs = 2000

export interface PolledChannelsOptions {
  tab: string
  /** To every tab, this one included. */
  send: (message: Message) => void
  onError: (error: Error) => void
  transport: TransportFactory
  /** The shared transport's state, as the last leader said. */
  state: TransportState | undefined
}

/** What the leader runs (or a client alone): the channels of every tab, followed by one transport. */
export class PolledChannels {
  readonly #options: PolledChannelsOptions
  readonly #channels = new Map<string, PolledChannel>()
  readonly #transport: Transport

  constructor (options: PolledChannelsOptions) {
    this.#options = options
    const host = {
      asked: (): AskedChannel[] => [...this.#channels].map(([name, channel]) => ({ name, channel, cursor: channel.cursor, confirmed: channel.confirmed, answerAtOnce: channel.answerAtOnce })),
      answered: (asked: readonly AskedChannel[], reply: PollReply): void => { this.#answer(asked, reply) },
      stateChanged: (state: TransportState): void => { options.send({ t: 'state', from: options.tab, state }) },
      failed: (error: Error): void => { options.onError(error) }
    }
    this.#transport = options.transport(host, options.state)
  }

  get state (): TransportState {
    return this.#transport.state
  }

  inherit (name: string, cursor: string, keepUntil: number): void {
    this.#channels.set(name, { cursor, confirmed: true, answerAtOnce: false, members: new Map(), keepUntil })
    this.#transport.changed(false)
  }

  /** A tab's request; `head` is the cursor of the leader's own tab when it takes over. */
  handle (message: MemberMessage, head?: string): void {
    const { tab } = this.#options
    switch (message.t) {
      case 'join': {
        let channel = this.#channels.get(message.c)
        if (channel === undefined) {
          // A cursor to start after is one the server gave (position()): the first answer starts at it.
          const start = head ?? message.after
          const cursor = start ?? (message.history ? cursorAllHeld : cursorNow)
          channel = { cursor, confirmed: start !== undefined, answerAtOnce: head === undefined && message.after !== undefined, members: new Map(), keepUntil: 0 }
          this.#channels.set(message.c, channel)
          this.#transport.changed(false)
        } else if (message.history && !channel.confirmed && channel.cursor !== cursorAllHeld) {
          // Asked before the first answer: that answer brings the history to every tab that waits for it.
          channel.cursor = cursorAllHeld
          this.#transport.changed(true)
        }
        if (!channel.members.has(message.from)) channel.members.set(message.from, Date.now())
        this.#options.send({ t: 'ack', from: tab, to: message.from, c: message.c, cursor: channel.confirmed ? channel.cursor : null, firstAnswerDue: channel.answerAtOnce, state: this.state })
        break
      }
      case 'leave':
        this.#leave(message.from, message.c)
        break
      case 'here': {
        const named = new Set(message.channels.map(({ c }) => c))
        for (const [name] of this.#channels) {
          if (!named.has(name)) this.#leave(message.from, name)
        }
        for (const { c, cursor, history, after } of message.channels) this.handle({ t: 'join', from: message.from, c, history, after }, cursor)
        break
      }
      case 'need': {
        const channel = this.#channels.get(message.c)
        if (channel === undefined) break
        channel.cursor = message.cursor
        channel.confirmed = true
        this.#transport.changed(true)
        break
      }
      case 'ping':
        this.#options.send({ t: 'beat', from: tab, state: this.state })
        break
    }
  }

  /** Forgets the tabs that are gone (a tab that just joined may not hold its lock yet), and the channels no tab wants. */
  prune (alive: ReadonlySet<string>, now: number): void {
    for (const [name, channel] of this.#channels) {
      for (const [member, joined] of channel.members) {
        if (!alive.has(member) && now - joined > inheritedGraceMs) channel.members.delete(member)
      }
      if (channel.members.size === 0 && now >= channel.keepUntil) {
        this.#channels.delete(name)
        this.#transport.changed(false)
      }
    }
  }

  stop (): void {
    this.#transport.stop()
  }

  #leave (tab: string, name: string): void {
    const channel = this.#channels.get(name)
    if (channel?.members.delete(tab) !== true || channel.members.size > 0) return
    this.#channels.delete(name)
    this.#transport.changed(false)
  }

  #answer (asked: readonly AskedChannel[], reply: PollReply): void {
    const batches: Batch[] = []
    for (const { name, channel, cursor, confirmed } of asked) {
      const next = reply.p[name]
      // Left meanwhile (and perhaps joined again), or moved by a tab that fell behind.
      if (next === undefined || this.#channels.get(name) !== channel || channel.cursor !== cursor) continue
      channel.cursor = next
      channel.confirmed = true
      channel.answerAtOnce = false
      batches.push({ c: name, from: confirmed ? cursor : null, m: reply.m?.[name] ?? [], p: next, gap: reply.gap?.includes(name) ?? false })
    }
    this.#options.send({ t: 'reply', from: this.#options.tab, items: batches })
  }
}
