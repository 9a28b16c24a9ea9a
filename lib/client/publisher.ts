// Publishing from the client, safe to retry: each publish gets an Idempotency-Key of the client's
// making, and a network failure or a 503 is retried with the same key (backoff, Retry-After as a
// floor), so that the server stores the event once however often it is sent.
import { backoffDelay, sleep } from './backoff.js'
import { CometClientError } from './errors.js'
import type { CometRetryOptions } from './types.js'
import { errorOf } from './wire.js'

/**
 * Sends in all at most this many times. With the default backoff the last try goes within about
 * 15 s of the first (more when the server asks for a longer Retry-After), well inside the server's
 * idempotencyWindow (5 minutes by default), after which a key would publish again.
 */
export const publishAttempts = 6

export interface PublishRequest {
  fetch: typeof fetch
  url: URL
  data: unknown
  retry: Required<CometRetryOptions>
}

/** 128 random bits as hex: `crypto.getRandomValues` exists where `randomUUID` may not (pages served over plain http). */
export function newIdempotencyKey (): string {
  const bytes = globalThis.crypto.getRandomValues(new Uint8Array(16))
  return Array.from(bytes, byte => byte.toString(16).padStart(2, '0')).join('')
}

export async function publishOnce ({ fetch, url, data, retry }: PublishRequest): Promise<{ id: string }> {
  const headers: Record<string, string> = { 'idempotency-key': newIdempotencyKey() }
  const init: RequestInit = { method: 'POST', headers }
  if (data !== undefined) {
    headers['content-type'] = 'application/json'
    init.body = JSON.stringify(data)
  }
  let failure: unknown
  for (let attempt = 1; attempt <= publishAttempts; attempt++) {
    if (attempt > 1) await sleep(backoffDelay(retry, attempt - 1, failure))
    try {
      const response = await fetch(url, init)
      // A replay (Idempotent-Replayed) answers the first publish's id: the same answer.
      if (response.ok) return await response.json() as { id: string }
      failure = await errorOf(response)
      if (response.status !== 503) throw failure
    } catch (error) {
      // fetch rejects for a network failure (a TypeError): the publish may or may not have been stored.
      if (error instanceof CometClientError) throw error
      failure = error
    }
  }
  throw failure
}
