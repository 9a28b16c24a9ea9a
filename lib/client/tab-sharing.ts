// Tab sharing: the tabs of one origin that use the same url share one transport. The tab that holds
// a Web Lock leads: it follows every tab's channels (PolledChannels); the others send it their
// requests and get its answers over a BroadcastChannel. Without sharing, a tab is its own leader.
import { errorShape, type LeaderMessage, type MemberMessage, type Message, type TabHead } from './messages.js'
import { inheritedGraceMs, PolledChannels } from './polled-channels.js'
import type { TransportFactory, TransportState } from './transport.js'
import type { CometBroadcastChannel, CometLocks, CometSharing } from './types.js'

/** How often the leader says it is alive, and followers check that it is. */
const beatMs = 1000
/** Silence from the leader after which a follower asks it, and after which it takes over. */
const pingAfterMs = 1500
const stealAfterMs = 3000

export interface TabSharingOptions {
  tab: string
  /** The lock whose holder leads, and the name of the BroadcastChannel. */
  key: string
  sharing: CometSharing | undefined
  transport: TransportFactory
  /** A failure of the transport this tab runs as the leader. */
  onError: (error: Error) => void
  /** The shared transport's state as this tab last heard it: what a new leader starts from. */
  transportState: () => TransportState | undefined
  /** This tab's channels, each with its cursor. */
  heads: () => TabHead[]
  closed: () => boolean
  /** A message of a leader's for this tab; `fromLeader`: from the tab this one takes for the leader. */
  receive: (message: LeaderMessage, fromLeader: boolean) => void
  /** Each beat while this tab follows. */
  onFollowerBeat: () => void
}

export class TabSharing {
  readonly #options: TabSharingOptions
  /** The channels this tab follows for every tab: always without sharing, while it leads with sharing. */
  #leading: PolledChannels | undefined
  #channel: CometBroadcastChannel | undefined
  #leader: string | undefined
  #lastHeard = 0
  #pinged = false
  /** The channels and cursors of the last answer seen: what a new leader starts from. */
  readonly #lastPolled = new Map<string, string>()
  #leadAttempt = 0
  #leadRequest: AbortController | undefined
  #resign: (() => void) | undefined
  #releaseTabLock: (() => void) | undefined
  #beat: ReturnType<typeof setInterval> | undefined

  constructor (options: TabSharingOptions) {
    this.#options = options
  }

  get leading (): boolean {
    return this.#leading !== undefined
  }

  // The first subscribe starts the poll of its own, or joins the tabs that share one.
  start (): void {
    const { sharing, key, tab } = this.#options
    if (sharing === undefined) {
      this.#leading ??= this.#newLeader(new Map())
      return
    }
    if (this.#channel !== undefined) return
    const { locks, BroadcastChannel } = sharing
    this.#channel = new BroadcastChannel(key)
    this.#channel.addEventListener('message', event => { this.#receive(event.data as Message) })
    // Held while the tab lives: the leader asks the lock manager which tabs are still there.
    void locks.request(`${key} tab ${tab}`, {}, () => new Promise<void>(resolve => { this.#releaseTabLock = resolve }))
    this.#lastHeard = Date.now()
    this.#beat = setInterval(() => { this.#onBeat() }, beatMs)
    ;(this.#beat as { unref?: () => void }).unref?.()
    const page = globalThis as { document?: { addEventListener?: (type: string, listener: () => void) => void } }
    /* c8 ignore start: only a browser freezes a page */
    page.document?.addEventListener?.('freeze', () => {
      // A frozen tab can neither poll nor pass answers on: it lets another lead.
      this.#leadAttempt++
      this.#leadRequest?.abort()
      this.#stopLeading()
    })
    page.document?.addEventListener?.('resume', () => {
      if (!this.#options.closed()) this.#requestLead(false)
    })
    /* c8 ignore stop */
    this.#requestLead(false)
  }

  /** A request of this tab's, to the leader (itself, when it leads). */
  toLeader (message: MemberMessage): void {
    if (this.#leading !== undefined) this.#leading.handle(message)
    else this.#post(message)
  }

  // A leader that closes hands over at once: the next tab in the lock's queue starts from the
  // cursors of the last answer.
  close (): void {
    this.#leadAttempt++
    this.#leadRequest?.abort()
    this.#stopLeading()
    this.#releaseTabLock?.()
    clearInterval(this.#beat)
    this.#channel?.close()
  }

  #requestLead (steal: boolean): void {
    const attempt = ++this.#leadAttempt
    this.#leadRequest?.abort()
    const controller = new AbortController()
    this.#leadRequest = steal ? undefined : controller
    const options = steal ? { steal: true } : { signal: controller.signal }
    // Stolen by a tab that found this one frozen, or handed over to a tab that took over: follow,
    // and queue to lead again.
    const follow = (): void => {
      if (attempt !== this.#leadAttempt || this.#options.closed()) return
      this.#stopLeading()
      this.#requestLead(false)
    }
    this.#options.sharing?.locks.request(this.#options.key, options, async () => { await this.#lead(attempt) }).then(follow, follow)
  }

  async #lead (attempt: number): Promise<void> {
    if (attempt !== this.#leadAttempt || this.#options.closed()) return
    this.#leader = this.#options.tab
    this.#leading = this.#newLeader(this.#lastPolled)
    this.#post({ t: 'lead', from: this.#options.tab })
    await new Promise<void>(resolve => { this.#resign = resolve })
  }

  #stopLeading (): void {
    if (this.#leading === undefined) return
    this.#leading.stop()
    this.#leading = undefined
    // The next leader's first message names it.
    this.#leader = undefined
    this.#resign?.()
    this.#resign = undefined
  }

  #newLeader (inherited: ReadonlyMap<string, string>): PolledChannels {
    const { tab } = this.#options
    const leading = new PolledChannels({
      tab,
      transport: this.#options.transport,
      state: this.#options.transportState(),
      send: message => {
        this.#post(message)
        this.#receive(message)
      },
      onError: error => {
        this.#post({ t: 'error', from: tab, error: errorShape(error) })
        this.#options.onError(error)
      }
    })
    const now = Date.now()
    for (const [name, cursor] of inherited) leading.inherit(name, cursor, now + inheritedGraceMs)
    for (const { c, cursor, history, after } of this.#options.heads()) {
      leading.handle({ t: 'join', from: tab, c, history, after }, cursor)
    }
    return leading
  }

  #post (message: Message): void {
    this.#channel?.postMessage(message)
  }

  #onBeat (): void {
    const { key, tab, sharing } = this.#options
    const leading = this.#leading
    if (leading !== undefined) {
      this.#post({ t: 'beat', from: tab, state: leading.state })
      // Tabs closed or crashed hold no lock any more: their channels need no polling.
      void sharing?.locks.query?.().then(snapshot => {
        const prefix = `${key} tab `
        // Held or still queued: a tab's lock is granted at once, but a snapshot may come first.
        const names = Object.values(snapshot).flat().map(lock => String(lock.name))
        const alive = new Set(names.filter(name => name.startsWith(prefix)).map(name => name.slice(prefix.length)))
        leading.prune(alive, Date.now())
      })
      return
    }
    const silence = Date.now() - this.#lastHeard
    if (silence > stealAfterMs) {
      // The leader is frozen (a background tab) or gone without its lock: take over.
      this.#lastHeard = Date.now()
      this.#pinged = false
      this.#requestLead(true)
    } else if (silence > pingAfterMs && !this.#pinged) {
      this.#pinged = true
      this.#post({ t: 'ping', from: tab })
    }
    this.#options.onFollowerBeat()
  }

  #receive (message: Message): void {
    if (this.#options.closed()) return
    switch (message.t) {
      case 'join': case 'leave': case 'here': case 'need': case 'ping':
        this.#leading?.handle(message)
        return
      case 'lead':
        // Another tab leads. If this one led, its lock was stolen: the lock's rejection makes it
        // follow (not this message, which may be older than this tab's own lead).
        if (this.#leading === undefined) this.#leader = message.from
        this.#heard()
        this.#post({ t: 'here', from: this.#options.tab, channels: this.#options.heads() })
        return
      case 'reply':
        for (const batch of message.items) this.#lastPolled.set(batch.c, batch.p)
        // The leader's last answer names every channel it polls.
        for (const name of this.#lastPolled.keys()) {
          if (!message.items.some(batch => batch.c === name)) this.#lastPolled.delete(name)
        }
        break
    }
    this.#leader ??= message.from
    if (message.from === this.#leader) this.#heard()
    this.#options.receive(message, message.from === this.#leader)
  }

  #heard (): void {
    this.#lastHeard = Date.now()
    this.#pinged = false
  }
}

// Sharing needs a page (Node.js keeps a poll per client) with both primitives.
export function pageSharing (): CometSharing | undefined {
  const page = globalThis as unknown as { document?: unknown, navigator?: { locks?: CometLocks }, BroadcastChannel?: CometSharing['BroadcastChannel'] }
  /* c8 ignore next 3: only a browser has them; the browser test runs this */
  if (page.document !== undefined && page.navigator?.locks !== undefined && page.BroadcastChannel !== undefined) {
    return { locks: page.navigator.locks, BroadcastChannel: page.BroadcastChannel }
  }
  return undefined
}
