// Who a request is on a channel, as the user's `presence` hook says: its result checked once, here.
import type { FastifyRequest } from 'fastify'
import { errors } from '../errors.js'

/** A member's identity and the public info that others see of it (a display name, an avatar). */
export interface PresenceIdentity {
  /** Counts the member: polls of the same id, from any tab, device or process, are one member. */
  id: string
  /** Any JSON value, of at most 4096 bytes as JSON; shown in snapshots and join events. */
  info?: unknown
}

/**
 * Decides whether a subscribe makes its request a member of one channel, and as whom: return (or
 * resolve) `{ id, info }`, or `null` when it is not a member. Called for each channel of every
 * poll, after `authorizeSubscribe`; a thrown error keeps its `statusCode`, as an authorizer's does.
 */
export type CometPresenceHook = (request: FastifyRequest, channel: string) => PresenceIdentity | null | Promise<PresenceIdentity | null>

export const maxIdLength = 256
export const maxInfoBytes = 4096

/** A checked identity: its id, and its info as JSON. */
export interface CheckedIdentity {
  readonly id: string
  readonly infoJson: string
}

/**
 * The hook's result, checked. A wrong one is a bug in the server's own code, not in the request:
 * it fails the poll with FST_COMET_INVALID_PRESENCE, a 500 that Fastify logs at level error with
 * what was wrong, rather than a 4xx that would blame the client, or a member silently left out.
 */
export function checkIdentity (result: unknown, channel: string): CheckedIdentity | null {
  if (result === null) return null
  if (typeof result !== 'object' || Array.isArray(result)) {
    throw new errors.FST_COMET_INVALID_PRESENCE(describe(result), channel, 'return null, or an object { id, info }')
  }
  const { id, info } = result as { id?: unknown, info?: unknown }
  if (typeof id !== 'string' || id.length === 0 || id.length > maxIdLength) {
    throw new errors.FST_COMET_INVALID_PRESENCE(`an id of ${describe(id)}`, channel, `give each member an id that is a string of 1 to ${maxIdLength} characters`)
  }
  let infoJson: string | undefined
  try {
    infoJson = info === undefined ? 'null' : JSON.stringify(info)
  } catch (error) {
    throw new errors.FST_COMET_INVALID_PRESENCE(`info that is not JSON (${(error as Error).message})`, channel, 'give plain JSON values as info')
  }
  if (infoJson === undefined) throw new errors.FST_COMET_INVALID_PRESENCE(`info that is a ${typeof info}`, channel, 'give plain JSON values as info')
  const bytes = Buffer.byteLength(infoJson)
  if (bytes > maxInfoBytes) {
    throw new errors.FST_COMET_INVALID_PRESENCE(`info of ${bytes} bytes as JSON`, channel, `keep info within ${maxInfoBytes} bytes (a name and an avatar URL, not a profile)`)
  }
  return { id, infoJson }
}

/**
 * The identities of a request on channels, each checked; null where it is no member. Synchronous
 * when every answer of the hook is, so that a poll keeps the route's path without a promise.
 */
export function identitiesOf (hook: CometPresenceHook, request: FastifyRequest, channels: readonly string[]): Array<CheckedIdentity | null> | Promise<Array<CheckedIdentity | null>> {
  const results: unknown[] = []
  let pending = false
  try {
    for (const channel of channels) {
      const result = hook(request, channel)
      if (result instanceof Promise) pending = true
      results.push(result)
    }
  } catch (error) {
    // The answers already begun are not waited for: their rejections must not go unhandled.
    for (const result of results) if (result instanceof Promise) result.catch(() => {})
    throw error
  }
  const check = (resolved: unknown[]): Array<CheckedIdentity | null> => resolved.map((result, i) => checkIdentity(result, channels[i] as string))
  return pending ? Promise.all(results).then(check) : check(results)
}

function describe (value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)
  if (typeof value === 'function') return 'a function'
  if (Array.isArray(value)) return 'an array'
  if (typeof value === 'object' && value !== null) return 'an object'
  return String(value)
}
