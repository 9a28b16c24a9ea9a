// The chat's own connection to Redis, for its message store: made once at start, or the process
// ends with one line saying which Redis could not be reached and why (not a stack trace), since
// no retry cures a wrong REDIS_URL. Once made, it reconnects by itself whenever Redis goes away.
import type { Redis } from 'ioredis'

/** REDIS_URL as it may be shown: without its password. */
export function shownRedisUrl (url: string): string {
  try {
    const parsed = new URL(url)
    if (parsed.password !== '') parsed.password = '***'
    return parsed.href
  } catch {
    return url
  }
}

/**
 * A connection to `url` that answers commands, or, when Redis cannot be reached (refused, unknown
 * host, no answer within a few seconds, a password refused), a message on stderr and exit code 1.
 */
export async function connectOrExit (url: string, onLost: (error: Error) => void): Promise<Redis> {
  // Loaded only here: plain `npm start` needs no ioredis.
  const { Redis } = await import('ioredis')
  let connected = false
  let firstError: Error | undefined
  // While Redis is down, a command fails at once (no offline queue), so a post gets 503 instead
  // of waiting; the connection comes back within a second of Redis's return.
  const redis = new Redis(url, {
    lazyConnect: true,
    connectTimeout: 3000,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: attempt => connected ? Math.min(attempt * 100, 1000) : null
  })
  redis.on('error', (error: Error) => {
    if (connected) onLost(error)
    else firstError ??= error
  })
  try {
    await redis.connect()
    // Connected is not allowed in: a password Redis refuses shows here.
    await redis.ping()
    connected = true
    return redis
  } catch (error) {
    redis.disconnect()
    const why = (firstError ?? error as Error).message
    console.error(`Cannot reach Redis at ${shownRedisUrl(url)} (REDIS_URL): ${why}. Start Redis there, or unset REDIS_URL to run the chat in one process without it.`)
    process.exit(1)
  }
}
