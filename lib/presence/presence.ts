// Presence as the routes and `fastify.comet` see it: asks the hook who a request is on each channel
// of its poll, holds those members while the poll is open, reads snapshots, and guards the
// `<channel>@presence` channels of joins and leaves.
import type { FastifyRequest } from 'fastify'
import { errors } from '../errors.js'
import { assertChannelName } from '../protocol/poll.js'
import { identitiesOf, type CheckedIdentity } from './identity.js'
import type { ResolvedPresenceOptions } from './options.js'
import { presenceChannelOf, type PresenceSnapshotAt, type PresenceStore } from './store.js'
import { PresenceTracker } from './tracker.js'

export class Presence {
  readonly #options: ResolvedPresenceOptions
  readonly #tracker: PresenceTracker

  constructor (store: PresenceStore, options: ResolvedPresenceOptions, onError: (error: unknown, channel: string) => void) {
    this.#options = options
    this.#tracker = new PresenceTracker(store, { ...options, onError })
  }

  /**
   * A poll on `channels` begins: the request becomes a member of each channel where the hook says
   * so, until the returned function is called (when the poll ends) and the grace period after.
   * Synchronous when the hook is. Throws (or rejects), holding nothing, when the hook throws or
   * gives a wrong identity. Call the release
   * once. A stream calls this once when it opens and the release when it closes: present for its
   * whole life.
   */
  enter (request: FastifyRequest, channels: readonly string[]): (() => void) | Promise<() => void> {
    const memberships: string[] = []
    for (const channel of channels) {
      const of = presenceChannelOf(channel)
      // A reader of joins and leaves is no member; this process purges that channel meanwhile.
      if (of === undefined) memberships.push(channel)
      else this.#tracker.watch(of)
    }
    const identities = identitiesOf(this.#options.hook, request, memberships)
    return identities instanceof Promise ? identities.then(resolved => this.#hold(memberships, resolved)) : this.#hold(memberships, identities)
  }

  #hold (memberships: readonly string[], identities: ReadonlyArray<CheckedIdentity | null>): () => void {
    const held: Array<[string, string]> = []
    for (let i = 0; i < memberships.length; i++) {
      const identity = identities[i]
      if (identity === null || identity === undefined) continue
      const channel = memberships[i] as string
      this.#tracker.hold(channel, identity)
      held.push([channel, identity.id])
    }
    return () => {
      for (const [channel, id] of held) this.#tracker.release(channel, id)
    }
  }

  /** The channel whose rights guard `name`: a channel's joins and leaves are read by those who may subscribe to it. */
  guardOf (name: string): string {
    return presenceChannelOf(name) ?? name
  }

  /** Throws for a publish on a channel of joins and leaves. */
  checkPublish (channel: string): void {
    if (presenceChannelOf(channel) !== undefined) throw new errors.FST_COMET_PRESENCE_CHANNEL(channel)
  }

  async snapshot (channel: string): Promise<PresenceSnapshotAt> {
    assertChannelName(channel)
    return this.#tracker.snapshot(channel)
  }

  close (): void {
    this.#tracker.close()
  }
}
