// This process's members: how many polls (or, later, streams) each identity holds open on each
// channel, written to the presence store in batches, per channel and per refresh interval, rather
// than once per poll.
import type { CheckedIdentity } from './identity.js'
import type { PresenceEntry, PresenceSnapshotAt, PresenceStore } from './store.js'

export interface PresenceTrackerOptions {
  /** How long a member stays after its last poll ends. */
  graceMs: number
  /** How often the members held here are written again, below graceMs so that none lapses. */
  refreshMs: number
  /** How long a channel whose events a client here reads is still purged after its last poll. */
  watchMs: number
  /** Most members a snapshot lists. */
  maxMembers: number
  /** Whether a channel has join and leave events. */
  events: (channel: string) => boolean
  /** A write to the store failed: the next refresh writes again. */
  onError: (error: unknown, channel: string) => void
  /** The clock, in milliseconds; tests pass a fake one. @default Date.now */
  now?: () => number
}

interface LocalMember {
  readonly infoJson: string
  /** Polls of this identity open in this process. */
  holds: number
  /** When its last poll here ended, while holds is 0. */
  releasedAtMs: number
  /** The store has been told, since the member's last change, how long it stays. */
  written: boolean
}

export class PresenceTracker {
  readonly #store: PresenceStore
  readonly #options: PresenceTrackerOptions
  readonly #now: () => number
  readonly #members = new Map<string, Map<string, LocalMember>>()
  /** Channels whose events a client of this process reads, until when: purged here so that leaves come on time. */
  readonly #watched = new Map<string, number>()
  /** Channels with members new to this process, written at the next turn of the event loop. */
  readonly #joining = new Set<string>()
  #joinTimer: NodeJS.Immediate | undefined
  readonly #refreshTimer: NodeJS.Timeout

  constructor (store: PresenceStore, options: PresenceTrackerOptions) {
    this.#store = store
    this.#options = options
    this.#now = options.now ?? Date.now
    this.#refreshTimer = setInterval(() => { this.refresh().catch(() => {}) }, options.refreshMs).unref()
  }

  /** A poll of `identity` on `channel` begins: it is a member until release() and the grace period after. */
  hold (channel: string, identity: CheckedIdentity): void {
    let members = this.#members.get(channel)
    if (members === undefined) {
      members = new Map()
      this.#members.set(channel, members)
    }
    let member = members.get(identity.id)
    if (member === undefined) {
      member = { infoJson: identity.infoJson, holds: 0, releasedAtMs: 0, written: false }
      members.set(identity.id, member)
      // Written at once rather than at the next refresh, so that a join shows without delay; one
      // write per channel for all the members that came in this turn.
      this.#joining.add(channel)
      this.#joinTimer ??= setImmediate(() => this.#writeJoining())
    }
    member.holds++
  }

  /** The poll ended (answered or hung up): the grace period starts when the member's last one ends. */
  release (channel: string, id: string): void {
    const member = this.#members.get(channel)?.get(id)
    /* c8 ignore next */
    if (member === undefined || member.holds === 0) return
    if (--member.holds > 0) return
    member.releasedAtMs = this.#now()
    member.written = false
  }

  /** A client of this process reads the channel's joins and leaves. */
  watch (channel: string): void {
    this.#watched.set(channel, this.#now() + this.#options.watchMs)
  }

  /** Who is on the channel, with the events' cursor of that instant when it has events. */
  async snapshot (channel: string): Promise<PresenceSnapshotAt> {
    // A member whose first poll came this turn is in the snapshot.
    if (this.#joining.delete(channel)) await this.#write(channel)
    return this.#store.snapshot(channel, this.#options.maxMembers, this.#options.events(channel))
  }

  /** Writes every channel held or watched here: what the refresh timer runs. */
  async refresh (): Promise<void> {
    const now = this.#now()
    const channels = new Set(this.#members.keys())
    for (const [channel, until] of this.#watched) {
      if (until > now) channels.add(channel)
      else this.#watched.delete(channel)
    }
    await Promise.all([...channels].map(channel => this.#write(channel)))
  }

  /** Stops writing. The members held here stay in a shared store until their time is up, so a client that moves to another process does not flicker out. */
  close (): void {
    clearInterval(this.#refreshTimer)
    if (this.#joinTimer !== undefined) clearImmediate(this.#joinTimer)
    this.#joinTimer = undefined
    this.#joining.clear()
  }

  #writeJoining (): void {
    this.#joinTimer = undefined
    for (const channel of this.#joining) this.#write(channel).catch(() => {})
    this.#joining.clear()
  }

  async #write (channel: string): Promise<void> {
    const entries = this.#entries(channel)
    try {
      await this.#store.refresh(channel, entries, this.#options.events(channel))
    } catch (error) {
      // Written again at the next refresh; a member whose poll is still open is sent every time anyway.
      const members = this.#members.get(channel)
      for (const { id } of entries) {
        const member = members?.get(id)
        if (member !== undefined) member.written = false
      }
      this.#options.onError(error, channel)
    }
  }

  // What the store must hear of this channel's members: those with polls open stay a whole grace
  // period from now (the next refresh comes before it ends); those whose last poll ended stay until
  // its grace period ends, told once; those past it are forgotten here, and the store removes them
  // unless another process holds them.
  #entries (channel: string): PresenceEntry[] {
    const members = this.#members.get(channel)
    const entries: PresenceEntry[] = []
    if (members === undefined) return entries
    const now = this.#now()
    const { graceMs } = this.#options
    for (const [id, member] of members) {
      if (member.holds > 0) {
        entries.push({ id, infoJson: member.infoJson, ttlMs: graceMs })
        continue
      }
      const ttlMs = member.releasedAtMs + graceMs - now
      if (ttlMs <= 0) {
        members.delete(id)
      } else if (!member.written) {
        member.written = true
        entries.push({ id, infoJson: member.infoJson, ttlMs })
      }
    }
    if (members.size === 0) {
      this.#members.delete(channel)
      // The store's clock may be a little behind ours (Redis's, a round trip away): keep purging
      // the channel for a grace period, so that the last member's leave is told by someone.
      this.#watched.set(channel, Math.max(this.#watched.get(channel) ?? 0, now + graceMs))
    }
    return entries
  }
}
