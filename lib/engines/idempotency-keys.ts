// The memory engine's idempotency keys: each channel's keys within their window, oldest first,
// with what they cost in bytes, which the engine's historyBytes budget counts.
import { hash } from 'node:crypto'

/** A place on the memory engine's timeline: a key is as old as the event its first publish stored. */
export interface KeyPosition {
  readonly ms: number
  readonly n: number
}

/** An idempotency key within its window, and what its first publish stored. */
interface RememberedKey extends KeyPosition {
  /** The channel and the key, as the map is keyed. */
  readonly scoped: string
  readonly id: string
  /** A digest of the event's JSON: the same key with other data is refused, and the data itself need not be kept. */
  readonly fingerprint: string
  readonly bytes: number
}

/** What a key costs besides the characters of its channel, key, id and fingerprint. */
const keyCost = 200

/** What a keyed publish finds: a key to replay (or refuse), or the fingerprint to remember the new event with. */
export type KeyLookup =
  | { readonly known: true, readonly id: string, readonly sameData: boolean }
  | { readonly known: false, readonly scoped: string, readonly fingerprint: string }

export class IdempotencyKeys {
  /** Oldest first: the engine's clock never goes back, so this is also their order of expiry. */
  readonly #keys = new Map<string, RememberedKey>()
  readonly #windowMs: number
  readonly #limit: number
  #bytes = 0

  constructor (windowMs: number, limit: number) {
    this.#windowMs = windowMs
    this.#limit = limit
  }

  /** Bytes the keys take, as historyBytes counts them. */
  get bytes (): number {
    return this.#bytes
  }

  get size (): number {
    return this.#keys.size
  }

  /** Looks a key up at `ms`, once the keys whose window has ended are forgotten. */
  find (channel: string, key: string, json: string, ms: number): KeyLookup {
    this.forgetExpired(ms)
    // A space is in neither a channel name nor a key.
    const scoped = `${channel} ${key}`
    const fingerprint = hash('sha1', json, 'base64')
    const known = this.#keys.get(scoped)
    if (known === undefined) return { known: false, scoped, fingerprint }
    return { known: true, id: known.id, sameData: known.fingerprint === fingerprint }
  }

  /** Remembers a key found unknown, for the event its publish stored; past the limit, the oldest key is forgotten. */
  remember (lookup: Extract<KeyLookup, { known: false }>, event: KeyPosition & { readonly id: string }): void {
    const { scoped, fingerprint } = lookup
    const bytes = keyCost + scoped.length + event.id.length + fingerprint.length
    this.#keys.set(scoped, { scoped, id: event.id, fingerprint, ms: event.ms, n: event.n, bytes })
    this.#bytes += bytes
    if (this.#keys.size > this.#limit) this.forgetOldest()
  }

  /** The position of the oldest key, for the budget to weigh against the oldest event. */
  oldest (): KeyPosition | undefined {
    return this.#keys.values().next().value
  }

  forgetOldest (): void {
    const key = this.#keys.values().next().value as RememberedKey
    this.#forget(key)
  }

  forgetExpired (ms: number): void {
    for (const key of this.#keys.values()) {
      if (ms - key.ms < this.#windowMs) return
      this.#forget(key)
    }
  }

  clear (): void {
    this.#keys.clear()
    this.#bytes = 0
  }

  #forget (key: RememberedKey): void {
    this.#keys.delete(key.scoped)
    this.#bytes -= key.bytes
  }
}
