// The presence options: their defaults, and their checks at registration.
import { invalid, positiveInteger, positiveNumber } from '../validate.js'
import type { CometPresenceHook } from './identity.js'
import { maxEventsChannelLength } from './store.js'

export interface PresenceOptions {
  /**
   * Makes the requests that poll a channel its members: called for each channel of every poll,
   * it returns (or resolves to) `{ id, info }`, or `null` when the request is no member. Members
   * are counted by `id`. See docs/presence.md.
   * @default undefined (no presence)
   */
  presence?: CometPresenceHook | undefined
  /**
   * Seconds a member stays after its last poll ends, so that a client between two polls (or
   * backing off after a failure) does not leave and join again.
   * @default tries × sleep, and at least 10
   */
  presenceGrace?: number | undefined
  /**
   * Publish each join and leave on `<channel>@presence`, for every channel (`true`) or for those
   * the function picks, such as small rooms: each join and leave is an event for every reader.
   * @default false
   */
  presenceEvents?: boolean | ((channel: string) => boolean) | undefined
  /**
   * Most members a snapshot lists; `count` stays exact above it.
   * @default 100
   */
  presenceMaxMembers?: number | undefined
}

export interface ResolvedPresenceOptions {
  hook: CometPresenceHook
  graceMs: number
  refreshMs: number
  /** How long a channel whose events a client reads is still purged by this process after its last poll on them. */
  watchMs: number
  events: (channel: string) => boolean
  maxMembers: number
}

export const defaultPresenceMaxMembers = 100
/** The client's longest backoff between two polls after failures (its retry.maxDelay). */
const minimumDefaultGraceSeconds = 10

/** Undefined when presence is off. */
export function resolvePresenceOptions (options: PresenceOptions, pollTimeoutMs: number): ResolvedPresenceOptions | undefined {
  const { presence, presenceGrace, presenceEvents = false, presenceMaxMembers = defaultPresenceMaxMembers } = options
  if (presence === undefined) {
    for (const [name, value] of Object.entries({ presenceGrace, presenceEvents: options.presenceEvents, presenceMaxMembers: options.presenceMaxMembers })) {
      if (value !== undefined) invalid(name, 'left out without the presence option (set presence to track members)', value)
    }
    return undefined
  }
  if (typeof presence !== 'function') invalid('presence', 'a function (request, channel) => ({ id, info }) or null', presence)
  // A poll cut by a proxy is noticed by the client's watchdog only after a whole poll's length.
  const graceSeconds = presenceGrace ?? Math.max(pollTimeoutMs / 1000, minimumDefaultGraceSeconds)
  positiveNumber('presenceGrace', graceSeconds, 'a positive number of seconds')
  if (typeof presenceEvents !== 'boolean' && typeof presenceEvents !== 'function') invalid('presenceEvents', 'true, false or a function (channel) => boolean', presenceEvents)
  positiveInteger('presenceMaxMembers', presenceMaxMembers)
  const graceMs = Math.ceil(graceSeconds * 1000)
  if (graceMs > 0x7fffffff) invalid('presenceGrace', 'at most 24 days', presenceGrace)
  const pick = presenceEvents
  return {
    hook: presence,
    graceMs,
    // Four writes per grace period: a member whose process died is gone within the grace period,
    // and one missed write (a slow Redis) does not make a live one lapse.
    refreshMs: Math.max(1, Math.floor(graceMs / 4)),
    watchMs: pollTimeoutMs + graceMs,
    // A name longer than this has no `<channel>@presence` that a subscribe could name.
    events: typeof pick === 'function'
      ? channel => channel.length <= maxEventsChannelLength && pick(channel) === true
      : channel => pick && channel.length <= maxEventsChannelLength,
    maxMembers: presenceMaxMembers
  }
}
