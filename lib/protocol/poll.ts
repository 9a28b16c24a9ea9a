// The wire protocol, apart from HTTP plumbing: what a channel name and a cursor may be, how a
// subscribe names its channels, and the JSON a poll is answered with. README.md documents it. What
// the browser client shares of it (the channel-name rule, cursor values, a reply's shape) is in
// wire-format.ts, which imports nothing, so that the client is bundled without server code.
import type { ChannelBacklog, ReadPosition } from '../engines/engine.js'
import { fromNow, fromOldest } from '../engines/engine.js'
import { errors } from '../errors.js'
import { cursorAllHeld, cursorFromNow, isChannelName } from './wire-format.js'

export { channelNameChars, channelNamePattern, cursorAllHeld, cursorFromNow, cursorPattern, isChannelName, subscribedKeyPattern } from './wire-format.js'

/** Throws FST_COMET_INVALID_CHANNEL for a name server code passed that is no channel name (HTTP's are checked by the schemas). */
export function assertChannelName (channel: unknown): asserts channel is string {
  if (!isChannelName(channel)) throw new errors.FST_COMET_INVALID_CHANNEL(JSON.stringify(channel) ?? String(channel))
}

/**
 * 1 to 128 characters that are safe in a Redis key and an HTTP header: UUIDs, ULIDs, hex and
 * base64 (either alphabet) all fit. The header of the IETF draft "The Idempotency-Key HTTP Header
 * Field" is a Structured Field string, in double quotes: they are taken off first.
 */
const idempotencyKeyRegExp = /^[A-Za-z0-9_.:~@+/=-]{1,128}$/

export function isIdempotencyKey (value: unknown): value is string {
  return typeof value === 'string' && idempotencyKeyRegExp.test(value)
}

/**
 * The key an `Idempotency-Key` header carries, quoted or not; the bus checks it. Node.js joins a
 * header sent twice into one string with ", ", which no key contains: the bus refuses it.
 */
export function idempotencyKeyOfHeader (header: string): string {
  return header.length >= 2 && header.startsWith('"') && header.endsWith('"') ? header.slice(1, -1) : header
}

/** The channels a subscribe names, each once, in order, and where to read each from. */
export interface Subscription {
  readonly channels: readonly string[]
  readonly positions: readonly ReadPosition[]
}

const subscribedKeyStart = 'subscribed['

/**
 * The channels a subscribe names, with where to read each from. Accepts the flat keys of Fastify's
 * default query-string parser (`subscribed[room]`) and the nested object of parsers like `qs`.
 * The route's schema has already checked names and cursors, so a key that starts as
 * `subscribed[` is a whole `subscribed[<channel>]` (subscribedKeyPattern).
 */
export function parseSubscription (query: Readonly<Record<string, unknown>>): Subscription {
  const subscription = { channels: [] as string[], positions: [] as ReadPosition[] }
  for (const key in query) {
    if (key.startsWith(subscribedKeyStart)) add(subscription, key.slice(subscribedKeyStart.length, -1), query[key] as string)
  }
  const nested = query.subscribed as Readonly<Record<string, string>> | undefined
  for (const channel in nested) add(subscription, channel, nested[channel] as string)
  return subscription
}

// A channel named twice is read from the cursor named last, as a Map would keep it.
function add ({ channels, positions }: { channels: string[], positions: ReadPosition[] }, channel: string, cursor: string): void {
  const known = channels.indexOf(channel)
  if (known === -1) {
    channels.push(channel)
    positions.push(readPosition(cursor))
  } else {
    positions[known] = readPosition(cursor)
  }
}

/** Where a cursor a client sent reads from: "0" or nothing from now, "all" from the oldest held. */
export function readPosition (cursor: string): ReadPosition {
  if (cursorFromNow.includes(cursor)) return fromNow
  if (cursor === cursorAllHeld) return fromOldest
  return cursor
}

/**
 * A poll's answer, built as a string: event data is JSON already, and every name and cursor is
 * from a character set that JSON needs no escaping for.
 *
 * `{"s":0,"p":{…}}` when nothing is new; otherwise `{"s":1,"k":{…},"m":{…},"p":{…}}` plus
 * `"gap":[…]` when some channel lost events.
 */
export function formatPollReply (channels: readonly string[], backlogs: readonly ChannelBacklog[]): string {
  let latest = ''
  let events = ''
  let next = ''
  let gaps = ''
  for (let i = 0; i < channels.length; i++) {
    const channel = channels[i] as string
    const backlog = backlogs[i] as ChannelBacklog
    const separator = next === '' ? '' : ','
    next += `${separator}"${channel}":"${backlog.next}"`
    if (backlog.gap) gaps += `${gaps === '' ? '' : ','}"${channel}"`
    if (backlog.events.length === 0) continue
    const comma = latest === '' ? '' : ','
    latest += `${comma}"${channel}":"${backlog.next}"`
    events += `${comma}"${channel}":[${backlog.events.map(e => `{"id":"${e.id}","data":${e.json}}`).join(',')}]`
  }
  if (latest === '' && gaps === '') return `{"s":0,"p":{${next}}}`
  return `{"s":1,"k":{${latest}},"m":{${events}},"p":{${next}}${gaps === '' ? '' : `,"gap":[${gaps}]`}}`
}

/** The number of events a reply carries, for the `delivered` statistic. */
export function countEvents (backlogs: readonly ChannelBacklog[]): number {
  let count = 0
  for (const backlog of backlogs) count += backlog.events.length
  return count
}
