// The wire format of a stream (Server-Sent Events), beside lib/protocol/poll.ts, the long-poll's: the
// frames a stream sends and the Last-Event-ID it resumes from. docs/streaming.md documents it.
import type { ChannelBacklog } from '../engines/engine.js'
import { errors } from '../errors.js'
import { cursorPattern, isChannelName } from './poll.js'

/** Milliseconds an EventSource waits before it reconnects on its own (SSE `retry:`). */
export const reconnectAfterMs = 1000

/** A comment: keeps the connection alive without dispatching anything. */
export const heartbeatFrame = ':\n\n'

/**
 * What a stream sends first, in one write: a comment, so that a client sees at once that nothing
 * buffers the stream; the reconnection delay; and, in a message without data (which sets an
 * EventSource's last event id without dispatching an event), the cursors of every channel, so
 * that a stream that drops before its first event resumes from here and not from "now" again.
 */
export function streamOpenFrame (id: string): string {
  return `: fastify-comet stream\nretry: ${reconnectAfterMs}\nid: ${id}\n\n`
}

/**
 * A stream's message id: every channel of the stream with the cursor it resumes from,
 * `<channel>=<cursor>` joined by commas. Neither a channel name nor a cursor has `=` or `,`, and
 * both are plain ASCII, so the id goes into a Last-Event-ID header as it is.
 */
export function formatStreamId (channels: readonly string[], cursors: readonly string[]): string {
  let id = ''
  for (let i = 0; i < channels.length; i++) id += `${i === 0 ? '' : ','}${channels[i] as string}=${cursors[i] as string}`
  return id
}

const cursorRegExp = new RegExp(cursorPattern)

/**
 * The cursors of a Last-Event-ID header, by channel. Throws FST_COMET_INVALID_LAST_EVENT_ID for a
 * header that no stream of this plugin sends, or that names a channel the subscribe does not: a
 * client resuming from it could never be told what it missed. A well-formed cursor from another
 * server instance is the engine's to judge: it reads as a gap, as it would in a poll.
 */
export function parseStreamId (header: string, channels: readonly string[]): Map<string, string> {
  const cursors = new Map<string, string>()
  for (const pair of header.split(',')) {
    const [channel, cursor, extra] = pair.split('=')
    if (channel === undefined || cursor === undefined || extra !== undefined || !isChannelName(channel) || !cursorRegExp.test(cursor) || cursors.has(channel)) {
      throw new errors.FST_COMET_INVALID_LAST_EVENT_ID('not <channel>=<cursor>,… as a stream sends it')
    }
    if (!channels.includes(channel)) throw new errors.FST_COMET_INVALID_LAST_EVENT_ID(`it names channel "${channel}", which the subscribe does not`)
    cursors.set(channel, cursor)
  }
  return cursors
}

/** Some messages of a stream, as one string to write. */
export interface StreamFrames {
  readonly text: string
  /** Its length in bytes, for the bytes-sent counter. */
  readonly bytes: number
  readonly messages: number
}

/**
 * The messages for what one read of a stream brought: first a `gap` message naming the channels
 * that lost events, then one message per event, oldest first, channel by channel. Each message's
 * id gives, for every channel, the cursor right after what the client has received once it has
 * that message: `before[i]` for a channel whose events are still to come, the event's own cursor
 * for the channel of the event, the backlog's `next` for a channel whose messages are all sent.
 * So an EventSource that reconnects with the last id it got loses and repeats nothing; one that
 * got a gap and none of the events after it is told of the gap again.
 */
export function formatStreamFrames (channels: readonly string[], backlogs: readonly ChannelBacklog[], before: readonly string[]): StreamFrames {
  const cursors: string[] = []
  let gapChannels = ''
  for (let i = 0; i < backlogs.length; i++) {
    const backlog = backlogs[i] as ChannelBacklog
    cursors.push(backlog.events.length > 0 ? before[i] as string : backlog.next)
    if (backlog.gap) gapChannels += `${gapChannels === '' ? '' : ','}"${channels[i] as string}"`
  }
  let text = ''
  let messages = 0
  if (gapChannels !== '') {
    text += `id: ${formatStreamId(channels, cursors)}\nevent: gap\ndata: {"channels":[${gapChannels}]}\n\n`
    messages++
  }
  for (let i = 0; i < backlogs.length; i++) {
    const channel = channels[i] as string
    for (const event of (backlogs[i] as ChannelBacklog).events) {
      cursors[i] = event.id
      text += `id: ${formatStreamId(channels, cursors)}\ndata: {"channel":"${channel}","id":"${event.id}","data":${event.json}}\n\n`
      messages++
    }
  }
  return { text, bytes: Buffer.byteLength(text), messages }
}
