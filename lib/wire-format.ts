// What the server and the client both know of the wire protocol: the channel-name rule, the cursor
// values, and the shape of a poll's answer. It imports nothing, so that the browser client is
// bundled with it and without server code; protocol.ts holds the rest and re-exports this.

/** 1 to 128 characters that need no escaping in a query string or JSON. */
export const channelNameChars = '[A-Za-z0-9_.:@-]{1,128}'
export const channelNamePattern = `^${channelNameChars}$`
const channelNameRegExp = new RegExp(channelNamePattern)

/** Cursors are opaque to clients but always URL-safe, so they go into a query string as they are. */
export const cursorPattern = '^[A-Za-z0-9_.~-]{0,64}$'

/** A subscribe key in the PHP original's form: subscribed[<channel>]. */
export const subscribedKeyPattern = '^subscribed\\[(.*)\\]$'

/** The cursor values a client sends instead of a cursor the server returned. */
export const cursorFromNow = ['', '0']
export const cursorAllHeld = 'all'

export function isChannelName (value: unknown): value is string {
  return typeof value === 'string' && channelNameRegExp.test(value)
}
