// What the server and the client both know of the wire protocol: the channel-name rule, the cursor
// values, and the shape of a poll's answer. It imports nothing, so that the browser client is
// bundled with it and without server code; protocol.ts holds the rest and re-exports this.

/** 1 to 128 characters that need no escaping in a query string or JSON. */
export const channelNameChars = '[A-Za-z0-9_.:@-]{1,128}'
export const channelNamePattern = `^${channelNameChars}$`
const channelNameRegExp = new RegExp(channelNamePattern)

/** Cursors are opaque to clients but always URL-safe, so they go into a query string as they are. */
export const cursorPattern = '^[A-Za-z0-9_.~-]{0,64}$'

/** The characters a channel name may have, in words, for error messages. */
export const channelNameRule = '1 to 128 characters from A-Z a-z 0-9 _ - . : @'

/** A subscribe key in the PHP original's form: subscribed[<channel>]. */
export const subscribedKeyPattern = '^subscribed\\[(.*)\\]$'

/** The cursor values a client sends instead of a cursor the server returned; the client sends the first two. */
export const cursorNow = '0'
export const cursorAllHeld = 'all'
export const cursorFromNow = ['', cursorNow]

export function isChannelName (value: unknown): value is string {
  return typeof value === 'string' && channelNameRegExp.test(value)
}

/** An event as a poll's answer carries it. */
export interface WireEvent {
  id: string
  data: unknown
}

/**
 * A poll's answer, as protocol.ts's formatPollReply writes it: `s` is 1 when some channel has news;
 * `p` holds every channel's cursor to ask from next; `k` (the cursor after each channel's events)
 * and `m` (the events) name only the channels that have events, `gap` those that lost some.
 */
export interface PollReply {
  s: 0 | 1
  k?: Record<string, string>
  m?: Record<string, WireEvent[]>
  p: Record<string, string>
  gap?: string[]
}
