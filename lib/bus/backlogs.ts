// What a read found on a poll's channels, looked at as a whole: anything new, the cursors to read
// from next, how many gaps. Shared by polls (bus.ts) and streams (stream.ts).
import type { ChannelBacklog } from '../engines/engine.js'

/** Backlogs with no events at the cursors held: the answer for channels that did not change. */
export function unchanged (nexts: readonly string[]): ChannelBacklog[] {
  return nexts.map(next => ({ events: [], next, gap: false }))
}

export function hasNews (backlogs: readonly ChannelBacklog[]): boolean {
  for (const backlog of backlogs) if (backlog.gap || backlog.events.length > 0) return true
  return false
}

export function nextsOf (backlogs: readonly ChannelBacklog[]): string[] {
  const nexts: string[] = []
  for (const backlog of backlogs) nexts.push(backlog.next)
  return nexts
}

export function countGaps (backlogs: readonly ChannelBacklog[]): number {
  let gaps = 0
  for (const backlog of backlogs) if (backlog.gap) gaps++
  return gaps
}
