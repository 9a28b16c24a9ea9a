// The byte bound on one poll's answer: events beyond it wait for the client's next poll, which
// comes at once. A poll naming many channels from far back cannot make the server build a reply of
// hundreds of megabytes.
import type { ChannelBacklog, ReadPosition, StoredEvent } from '../engines/engine.js'
import { fromOldest } from '../engines/engine.js'
import { cursorAllHeld } from '../protocol/poll.js'

/** `{"id":"…","data":…},` around each event's id and data: 7 + 9 + 1 + 1 bytes. */
const eventFraming = 18

/**
 * The backlogs cut at `maxBytes` of events, in channel order; the first event always goes, however
 * large, so that no event is stuck. A channel cut after some of its events resumes from the last
 * one sent; a channel none of whose events fit keeps the position it was read from, and its gap,
 * if any, is reported with those events on the next poll, so that it is reported once.
 */
export function withinReplyBytes (backlogs: readonly ChannelBacklog[], positions: readonly ReadPosition[], maxBytes: number): readonly ChannelBacklog[] {
  // UTF-8 takes at most three bytes per UTF-16 unit: most replies are surely within the bound,
  // without encoding anything.
  let most = 0
  for (const backlog of backlogs) {
    for (const event of backlog.events) most += event.json.length * 3 + event.id.length + eventFraming
  }
  if (most <= maxBytes) return backlogs

  let bytes = 0
  const bounded: ChannelBacklog[] = []
  for (let i = 0; i < backlogs.length; i++) {
    const backlog = backlogs[i] as ChannelBacklog
    const { events } = backlog
    let fit = 0
    while (fit < events.length) {
      const event = events[fit] as StoredEvent
      const size = Buffer.byteLength(event.json) + event.id.length + eventFraming
      if (bytes > 0 && bytes + size > maxBytes) break
      bytes += size
      fit++
    }
    if (fit === events.length) {
      bounded.push(backlog)
    } else if (fit > 0) {
      bounded.push({ events: events.slice(0, fit), next: (events[fit - 1] as StoredEvent).id, gap: backlog.gap })
    } else {
      bounded.push({ events: [], next: resumeFrom(positions[i] as ReadPosition), gap: false })
    }
  }
  return bounded
}

// A read position as a client sends it. A read from "now" holds no events, so it is never cut.
function resumeFrom (position: ReadPosition): string {
  return position === fromOldest ? cursorAllHeld : position as string
}
