// What the tabs that share a poll say to each other over their BroadcastChannel.
import { CometClientError } from './errors.js'
import type { TransportState } from './transport.js'
import type { WireEvent } from './wire.js'

/**
 * What one poll's answer brought for one channel: its events after `from` (null when the poll
 * asked for "now" or "all": the channel's first answer), and the cursor after them.
 */
export interface Batch {
  c: string
  from: string | null
  m: WireEvent[]
  p: string
  gap: boolean
}

/**
 * A channel as a tab has it: the cursor after what it delivered (undefined before its first
 * answer), whether it asked for the held history, or the cursor it asked to start after.
 */
export interface TabHead {
  c: string
  cursor: string | undefined
  history: boolean
  after: string | undefined
}

/** An Error as it crosses to another tab (a structured clone keeps no class). */
export interface ErrorShape {
  name: string
  message: string
  code?: string | undefined
  statusCode?: number | undefined
  retryAfter?: number | undefined
}

// `from` is the sending tab. The leader sends lead, beat, state, reply, ack and error; every tab
// (the leader's own included) sends join, leave, here, need and ping. An ack's `cursor` is the
// channel's (null before the server gave one); `firstAnswerDue`: the poll asks from it (a tab's
// `after`) for the first time, and that answer is still to come.
export type Message =
  | { t: 'lead', from: string }
  | { t: 'beat' | 'state', from: string, state: TransportState }
  | { t: 'reply', from: string, items: Batch[] }
  | { t: 'ack', from: string, to: string, c: string, cursor: string | null, firstAnswerDue: boolean, state: TransportState }
  | { t: 'error', from: string, error: ErrorShape }
  | { t: 'join', from: string, c: string, history: boolean, after: string | undefined }
  | { t: 'leave', from: string, c: string }
  | { t: 'here', from: string, channels: TabHead[] }
  | { t: 'need', from: string, c: string, cursor: string }
  | { t: 'ping', from: string }

/** What a tab asks of the leader. */
export type MemberMessage = Extract<Message, { t: 'join' | 'leave' | 'here' | 'need' | 'ping' }>

/** What the leader tells the tabs. */
export type LeaderMessage = Extract<Message, { t: 'beat' | 'state' | 'reply' | 'ack' | 'error' }>

export function errorShape (error: Error): ErrorShape {
  const { code, statusCode, retryAfter } = error as CometClientError
  return { name: error.name, message: error.message, code, statusCode, retryAfter }
}

export function asError ({ name, message, code, statusCode, retryAfter }: ErrorShape): Error {
  if (code === undefined) return Object.assign(new Error(message), { name })
  return new CometClientError(message, code, statusCode, retryAfter)
}
