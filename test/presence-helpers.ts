// What the presence tests share: a hook that takes the member from a header, polls as a member,
// and a reader that rebuilds a channel's member list from its join and leave events.
import type { FastifyRequest } from 'fastify'
import type { PresenceIdentity, PresenceSnapshotAt } from '../plugin.js'
import { subscribeQuery, type PollReply } from './helpers.js'

/** The request's member: the x-user header, shown by name; no header, no member. */
export function memberFromHeader (request: FastifyRequest): PresenceIdentity | null {
  const user = request.headers['x-user']
  return typeof user === 'string' ? { id: user, info: { name: user.toUpperCase() } } : null
}

/** A poll of `user` on channels at "now", resolving to its reply once it ends; `signal` hangs it up. */
export async function pollAs (origin: string, user: string, channels: readonly string[], signal?: AbortSignal): Promise<PollReply> {
  const query = subscribeQuery(Object.fromEntries(channels.map(channel => [channel, '0'])))
  const response = await fetch(`${origin}/comet/subscribe?${query}`, { headers: { 'x-user': user }, ...(signal === undefined ? {} : { signal }) })
  return await response.json() as PollReply
}

export interface PresenceEvent {
  type: 'join' | 'leave'
  id: string
  info?: unknown
  since?: number
}

/** Follows `<channel>@presence` from a snapshot, as a page does, and keeps the member list it implies. */
export class MemberList {
  readonly events: PresenceEvent[] = []
  readonly members = new Map<string, unknown>()
  /** With `strict`: joins of members already listed and leaves of members not listed. */
  readonly problems: string[] = []
  gaps = 0
  readonly #strict: boolean
  #cursor: string
  readonly #channel: string

  constructor (channel: string, snapshot: PresenceSnapshotAt, { strict = false } = {}) {
    this.#strict = strict
    this.#channel = `${channel}@presence`
    this.#cursor = snapshot.cursor as string
    for (const member of snapshot.members) this.members.set(member.id, member.info)
  }

  /** One poll with wait=0 from the cursor held: applies what it brings. */
  async catchUp (origin: string): Promise<void> {
    for (;;) {
      const response = await fetch(`${origin}/comet/subscribe?${subscribeQuery({ [this.#channel]: this.#cursor })}&wait=0`)
      const reply = await response.json() as PollReply
      if (reply.gap !== undefined) this.gaps++
      const events = reply.m?.[this.#channel] ?? []
      for (const { data } of events) this.apply(data as PresenceEvent)
      this.#cursor = reply.p[this.#channel] as string
      if (events.length === 0) return
    }
  }

  apply (event: PresenceEvent): void {
    this.events.push(event)
    if (this.#strict && (event.type === 'join') === this.members.has(event.id)) this.problems.push(`${event.type} ${event.id} with members ${[...this.members.keys()].join()}`)
    if (event.type === 'join') this.members.set(event.id, event.info)
    else this.members.delete(event.id)
  }
}

/** The member ids of a snapshot, sorted. */
export function idsOf (snapshot: { members: ReadonlyArray<{ id: string }> }): string[] {
  return snapshot.members.map(m => m.id).sort()
}
