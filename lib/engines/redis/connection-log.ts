// What the Redis engine tells the server's log of its connection: that Redis cannot be reached at
// start, that the connection is lost, that it is back (and how long it was down). One line per
// change, however many connections and retries it takes, with the address and never the password.
import type { Cluster, Redis } from 'ioredis'
import type { EngineLogger } from '../engine.js'

type State = 'connecting' | 'unreachable' | 'up' | 'down'

interface Line {
  readonly level: 'error' | 'info'
  readonly fields: Record<string, unknown>
  readonly message: string
}

export class ConnectionLog {
  readonly #where: string
  readonly #loggers = new Set<EngineLogger>()
  readonly #now: () => number
  #state: State = 'connecting'
  /** When the engine started connecting, or lost the connection. */
  #sinceMs: number
  /** The last error a connection reported since the connection was last up. */
  #reason: string | undefined
  /** The line that says the connection is down, for a logger attached while it is. */
  #downLine: Line | undefined

  constructor (where: string, now: () => number = Date.now) {
    this.#where = where
    this.#now = now
    this.#sinceMs = now()
  }

  /** Starts telling `logger`; what is wrong right now, it is told at once. Returns how to stop. */
  attach (logger: EngineLogger): () => void {
    this.#loggers.add(logger)
    if (this.#downLine !== undefined) write(logger, this.#downLine)
    return () => { this.#loggers.delete(logger) }
  }

  /** A connection reported an error: the reason given when the connection is lost. */
  onError (error: Error): void {
    // A connection refused on every address of a name (localhost: ::1 and 127.0.0.1) is an
    // AggregateError with no message, and the code.
    this.#reason = error.message !== '' ? error.message : (error as { code?: string }).code ?? error.name
  }

  /** A connection is down and being made again (ioredis 'reconnecting'). */
  onDown (): void {
    if (this.#state === 'unreachable' || this.#state === 'down') return
    const reason = this.#reason ?? 'the connection closed'
    if (this.#state === 'connecting') {
      this.#state = 'unreachable'
      this.#downLine = { level: 'error', fields: { redis: this.#where, reason }, message: `fastify-comet: cannot connect to Redis at ${this.#where} (${reason}); publishes and polls get 503 until it can, and the engine keeps trying` }
    } else {
      this.#state = 'down'
      this.#sinceMs = this.#now()
      this.#downLine = { level: 'error', fields: { redis: this.#where, reason }, message: `fastify-comet: lost the connection to Redis at ${this.#where} (${reason}); publishes and polls get 503 until it is back, and the engine keeps trying` }
    }
    this.#tell(this.#downLine)
  }

  /** Every connection of the engine is ready. */
  onUp (): void {
    const was = this.#state
    this.#state = 'up'
    this.#downLine = undefined
    this.#reason = undefined
    if (was === 'connecting' || was === 'up') return
    const downMs = this.#now() - this.#sinceMs
    const seconds = (downMs / 1000).toFixed(1)
    this.#tell(was === 'unreachable'
      ? { level: 'info', fields: { redis: this.#where, downMs }, message: `fastify-comet: connected to Redis at ${this.#where}, ${seconds} s after the first try` }
      : { level: 'info', fields: { redis: this.#where, downMs }, message: `fastify-comet: the connection to Redis at ${this.#where} is back, after ${seconds} s down` })
  }

  #tell (line: Line): void {
    for (const logger of this.#loggers) write(logger, line)
  }
}

function write (logger: EngineLogger, { level, fields, message }: Line): void {
  logger[level](fields, message)
}

/** Where a Redis is, for the log: its URL without the password, or the address of a client. */
export function describeRedis (redis: string | Redis | Cluster): string {
  if (typeof redis === 'string') return withoutPassword(redis)
  if (redis.isCluster) {
    // Not a public field of ioredis: read with care, since only the log depends on it.
    const nodes = (redis as unknown as { startupNodes?: unknown }).startupNodes
    return Array.isArray(nodes) ? `the Redis Cluster of ${nodes.map(describeNode).join(', ')}` : 'the Redis Cluster'
  }
  // ioredis fills in host, port and db.
  const { host, port, path, db, tls } = (redis as Redis).options
  if (typeof path === 'string' && path !== '') return `unix:${path}`
  return `${tls === undefined ? 'redis' : 'rediss'}://${host}:${port}${db === 0 ? '' : `/${db}`}`
}

function describeNode (node: unknown): string {
  if (typeof node === 'string') return withoutPassword(node)
  if (typeof node === 'number') return `localhost:${node}`
  const { host = 'localhost', port = 6379 } = node as { host?: string, port?: number }
  return `${host}:${port}`
}

function withoutPassword (url: string): string {
  try {
    const parsed = new URL(url)
    parsed.password = ''
    return parsed.href
  } catch {
    return url.replace(/^([^/]*\/\/[^:@/]*):[^@/]*@/, '$1@')
  }
}
