// Waiting between retries: exponential backoff with full jitter, a Retry-After as a floor, the
// longest wait for an answer that asking again soon would not change; coming back online ends it.
import { CometClientError, isRefusal } from './errors.js'
import type { CometRetryOptions } from './types.js'

export const defaultRetry = { initialDelay: 500, maxDelay: 10_000 }

/** Milliseconds to wait after `failures` failures in a row, the last of them `error`. */
export function backoffDelay ({ initialDelay, maxDelay }: Required<CometRetryOptions>, failures: number, error: unknown): number {
  const ceiling = Math.min(maxDelay, initialDelay * 2 ** (failures - 1))
  let delay = Math.random() * ceiling
  if (error instanceof CometClientError) {
    if (isRefusal(error)) delay = maxDelay
    if (error.retryAfter !== undefined) delay = Math.max(delay, error.retryAfter * 1000)
  }
  return delay
}

/** Waits `delay` ms, or until `wakeUp` is called, or a browser comes back online. */
export function backoffWait (delay: number): { done: Promise<void>, wakeUp: () => void } {
  const events = globalThis as { addEventListener?: (type: string, listener: () => void) => void, removeEventListener?: (type: string, listener: () => void) => void }
  let wakeUp!: () => void
  const done = new Promise<void>(resolve => {
    const timer = setTimeout(finish, delay)
    events.addEventListener?.('online', finish)
    wakeUp = finish
    function finish (): void {
      clearTimeout(timer)
      events.removeEventListener?.('online', finish)
      resolve()
    }
  })
  return { done, wakeUp }
}

export function sleep (ms: number): Promise<void> {
  return new Promise(resolve => setTimeout(resolve, ms))
}
