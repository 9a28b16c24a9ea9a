// The Redis engine's cursors: "<epoch>.<offset>", where the epoch is 12 random URL-safe characters
// chosen when the channel's history began (again after Redis lost it) and the offset counts the
// channel's events in that epoch. No clock is involved, so servers need no synchronisation.
import { randomBytes } from 'node:crypto'
import { errors } from '../../errors.js'

export interface RedisCursor {
  readonly epoch: string
  /** Decimal digits, as Lua reads them. */
  readonly offset: string
}

const cursorPattern = /^([A-Za-z0-9_-]{12})\.(0|[1-9][0-9]{0,15})$/

/** Throws FST_COMET_INVALID_CURSOR (400) for a string this engine could never have returned. */
export function parseCursor (channel: string, cursor: string): RedisCursor {
  const parts = cursorPattern.exec(cursor)
  if (parts === null) throw new errors.FST_COMET_INVALID_CURSOR(JSON.stringify(channel))
  return { epoch: parts[1] as string, offset: parts[2] as string }
}

export function formatCursor (epoch: string, offset: number): string {
  return `${epoch}.${offset}`
}

/**
 * A new random epoch for each script call: the script takes it only when it starts a new epoch,
 * and an epoch must never come back, even from a call that was in flight when Redis restarted.
 */
export function freshEpoch (): string {
  return randomBytes(9).toString('base64url')
}
