// The Redis engine's presence store: each channel's members in Redis, shared by every process,
// purged and joined by one Lua script (presence.lua) so that each join and leave is told once.
import type { PresenceEntry, PresenceMember, PresenceSnapshotAt, PresenceStore } from '../../presence/store.js'
import { presenceEventsChannel } from '../../presence/store.js'

/** Runs presence.lua on these keys with these arguments after the engine's own (ARGV[4] on). */
export type RunPresenceScript = (keys: readonly string[], args: ReadonlyArray<string | number>) => Promise<unknown>

export class RedisPresenceStore implements PresenceStore {
  readonly #keyPrefix: string
  readonly #graceMs: number
  readonly #run: RunPresenceScript

  constructor (keyPrefix: string, graceMs: number, run: RunPresenceScript) {
    this.#keyPrefix = keyPrefix
    this.#graceMs = graceMs
    this.#run = run
  }

  async refresh (channel: string, entries: readonly PresenceEntry[], events: boolean): Promise<void> {
    const args: Array<string | number> = [events ? '1' : '0', this.#graceMs, 'refresh', 0]
    for (const { id, infoJson, ttlMs } of entries) args.push(id, infoJson, Math.ceil(ttlMs))
    await this.#run(this.#keys(channel), args)
  }

  async snapshot (channel: string, limit: number, events: boolean): Promise<PresenceSnapshotAt> {
    const reply = await this.#run(this.#keys(channel), [events ? '1' : '0', this.#graceMs, 'snapshot', limit]) as [number, string, ...Array<string | number>]
    const [count, cursor] = reply
    const members: PresenceMember[] = []
    for (let i = 2; i < reply.length; i += 3) {
      members.push({ id: reply[i] as string, since: reply[i + 1] as number, info: JSON.parse(reply[i + 2] as string) })
    }
    return cursor === '' ? { count, members } : { count, members, cursor }
  }

  // Every key in the slot of <channel>@presence, whose stream carries the joins and leaves.
  #keys (channel: string): string[] {
    const tag = `${this.#keyPrefix}{${presenceEventsChannel(channel)}}`
    return [`${tag}:m`, `${tag}:s`, `${tag}:n`, `${tag}:pe`, `${tag}:ps`, `${tag}:pi`]
  }
}
