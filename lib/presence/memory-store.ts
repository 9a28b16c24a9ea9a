// The presence store of the memory engine: members of each channel in this process's memory, their
// joins and leaves published as events on the engine's `<channel>@presence` channel.
import { fromNow } from '../engines/engine.js'
import type { MemoryEngine } from '../engines/memory.js'
import { joinEventJson, leaveEventJson, presenceEventsChannel, type PresenceEntry, type PresenceMember, type PresenceSnapshotAt, type PresenceStore } from './store.js'

interface HeldMember {
  readonly infoJson: string
  readonly since: number
  expiresAtMs: number
}

export class MemoryPresenceStore implements PresenceStore {
  readonly #engine: Pick<MemoryEngine, 'publish' | 'read'>
  readonly #now: () => number
  /** Members of each channel in the order they joined: the longest-present first. */
  readonly #channels = new Map<string, Map<string, HeldMember>>()

  constructor (engine: Pick<MemoryEngine, 'publish' | 'read'>, now: () => number = Date.now) {
    this.#engine = engine
    this.#now = now
  }

  async refresh (channel: string, entries: readonly PresenceEntry[], events: boolean): Promise<void> {
    this.#refresh(channel, entries, events)
  }

  async snapshot (channel: string, limit: number, events: boolean): Promise<PresenceSnapshotAt> {
    const members = this.#refresh(channel, [], events)
    const listed: PresenceMember[] = []
    for (const [id, member] of members ?? []) {
      if (listed.length === limit) break
      listed.push({ id, info: JSON.parse(member.infoJson), since: member.since })
    }
    const snapshot = { count: members?.size ?? 0, members: listed }
    if (!events) return snapshot
    // The memory engine reads synchronously: nothing runs between the purge above and this read,
    // so the events after this cursor are exactly the changes after this snapshot.
    const { next } = this.#engine.read(presenceEventsChannel(channel), fromNow, 1)
    return { ...snapshot, cursor: next }
  }

  // Synchronous from the purge to the last event, as one Lua script is on Redis: the memory
  // engine stores an event before its publish() returns, so the events are in this order.
  #refresh (channel: string, entries: readonly PresenceEntry[], events: boolean): Map<string, HeldMember> | undefined {
    const now = this.#now()
    let members = this.#channels.get(channel)
    // The entries first: a member held here stays, even when this refresh comes late.
    for (const { id, infoJson, ttlMs } of entries) {
      members ??= new Map()
      const member = members.get(id)
      if (member === undefined) {
        members.set(id, { infoJson, since: now, expiresAtMs: now + ttlMs })
        if (events) this.#publish(channel, joinEventJson(id, infoJson, now))
      } else {
        member.expiresAtMs = Math.max(member.expiresAtMs, now + ttlMs)
      }
    }
    if (members !== undefined) {
      for (const [id, member] of members) {
        if (member.expiresAtMs > now) continue
        members.delete(id)
        if (events) this.#publish(channel, leaveEventJson(id))
      }
    }
    if (members === undefined) return undefined
    if (members.size === 0) this.#channels.delete(channel)
    else this.#channels.set(channel, members)
    return members
  }

  #publish (channel: string, json: string): void {
    // The memory engine never rejects but once closed, and then presence is closed too.
    this.#engine.publish(presenceEventsChannel(channel), json).catch(() => {})
  }
}
