// What presence needs from where members live: the store contract that each engine implements
// (the memory engine in this process, the Redis engine across processes), and the name of the
// channel that carries a channel's join and leave events.

/** One member of a channel as a snapshot lists it. */
export interface PresenceMember {
  /** The identity the `presence` hook returned: one member per id, however many polls it has. */
  readonly id: string
  /** The public info the hook returned with the id when it joined (`null` when it gave none). */
  readonly info: unknown
  /** When it joined, in milliseconds since the Unix epoch (the store's clock: Redis's, on Redis). */
  readonly since: number
}

/** Who is on a channel right now. */
export interface PresenceSnapshot {
  /** Every member, exact however many there are. */
  readonly count: number
  /** The longest-present members first, at most `presenceMaxMembers` of them. */
  readonly members: readonly PresenceMember[]
}

/** A snapshot with the cursor of the channel's join/leave events at the same instant, when they are on. */
export interface PresenceSnapshotAt extends PresenceSnapshot {
  /** Subscribe to `<channel>@presence` from here, and every join and leave after the snapshot comes once. */
  readonly cursor?: string
}

/** A member this process holds, as it sends it to the store. */
export interface PresenceEntry {
  readonly id: string
  /** Its info as JSON, written when it joins. */
  readonly infoJson: string
  /** Milliseconds from now that it stays present at least, by the store's clock. */
  readonly ttlMs: number
}

/** What an engine's presence store is made with. */
export interface PresenceStoreOptions {
  /** How long a member stays after its last poll: a shared store keeps what it needs to purge that long. */
  readonly graceMs: number
}

export interface PresenceStore {
  /**
   * In one atomic step: adds the entries that are not members yet (each with one join event when
   * `events`), makes every entry present for at least its `ttlMs`, never shortening what another
   * process gave it, then removes the channel's members whose time is up (each with one leave event).
   * With no entries, it only removes the expired: what a process does for a channel it watches.
   */
  refresh (channel: string, entries: readonly PresenceEntry[], events: boolean): Promise<void>
  /** The members after removing the expired (as refresh does), and the events' cursor when `events`. */
  snapshot (channel: string, limit: number, events: boolean): Promise<PresenceSnapshotAt>
}

/** The suffix of the channel that carries a channel's joins and leaves: `chat:lobby@presence`. */
export const presenceSuffix = '@presence'
/** Channel names have at most 128 characters, so join/leave events exist for names of up to 119. */
export const maxEventsChannelLength = 128 - presenceSuffix.length

export function presenceEventsChannel (channel: string): string {
  return channel + presenceSuffix
}

/** The channel whose joins and leaves `name` carries, or undefined for an ordinary channel. */
export function presenceChannelOf (name: string): string | undefined {
  return name.endsWith(presenceSuffix) && name.length > presenceSuffix.length ? name.slice(0, -presenceSuffix.length) : undefined
}

/** The JSON of a join event: what a page adds to its member list. */
export function joinEventJson (id: string, infoJson: string, since: number): string {
  return `{"type":"join","id":${JSON.stringify(id)},"info":${infoJson},"since":${since}}`
}

/** The JSON of a leave event: what a page removes from its member list. */
export function leaveEventJson (id: string): string {
  return `{"type":"leave","id":${JSON.stringify(id)}}`
}
