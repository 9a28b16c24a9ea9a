// Shared test helpers: a server on a real socket, and a small HTTP client for polls and publishes.
import http2 from 'node:http2'
import type { AddressInfo } from 'node:net'
import Fastify, { type FastifyInstance } from 'fastify'
import type { Test } from 'tap'
import comet, { type CometOptions, type CometStats } from '../plugin.js'

export interface PollReply {
  s: 0 | 1
  k?: Record<string, string>
  m?: Record<string, Array<{ id: string, data: unknown }>>
  p: Record<string, string>
  gap?: string[]
}

export interface Served {
  app: FastifyInstance
  /** http://127.0.0.1:<port> */
  origin: string
}

/** Registers the plugin with these options on a server of its own, then closes it: for option checks. */
export async function register (options: unknown): Promise<void> {
  const app = Fastify()
  try {
    await app.register(comet, options as CometOptions)
    await app.ready()
  } finally {
    await app.close()
  }
}

export type Http2App = FastifyInstance<http2.Http2Server, http2.Http2ServerRequest, http2.Http2ServerResponse>

/** The plugin on Fastify({ http2: true }) (cleartext h2c), with one client session to it, both closed when the test ends. */
export async function serveHttp2 (t: Test, forceCloseConnections?: boolean): Promise<{ app: Http2App, session: http2.ClientHttp2Session }> {
  const app = Fastify({ http2: true, ...(forceCloseConnections === undefined ? {} : { forceCloseConnections }) })
  await app.register(comet)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const session = http2.connect(`http://127.0.0.1:${(app.server.address() as AddressInfo).port}`)
  t.teardown(async () => {
    session.destroy()
    await app.close()
  })
  return { app, session }
}

/** A Fastify server with the plugin, listening on a free port, closed when the test ends. */
export async function serve (t: Test, options: CometOptions = {}): Promise<Served> {
  const app = Fastify()
  await app.register(comet, options)
  t.teardown(() => closeServer(app))
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('expected a TCP address')
  return { app, origin: `http://127.0.0.1:${address.port}` }
}

/** Closes a server the tests are done with, with every connection still open to it. */
export async function closeServer (app: FastifyInstance): Promise<void> {
  const closing = app.close()
  // After an aborted fetch, Node's fetch opens a spare connection that never carries a request;
  // close() would wait for it until the headers timeout.
  app.server.closeAllConnections()
  await closing
}

/** The query string of a subscribe: subscribed[<channel>]=<cursor> for each entry. */
export function subscribeQuery (cursors: Record<string, string>): string {
  return Object.entries(cursors).map(([channel, cursor]) => `subscribed[${channel}]=${encodeURIComponent(cursor)}`).join('&')
}

/** GET {prefix}/subscribe over a real socket; resolves to status and parsed JSON body. */
export async function poll (origin: string, cursors: Record<string, string>, init: { signal?: AbortSignal, prefix?: string, headers?: Record<string, string> } = {}): Promise<{ status: number, headers: Headers, body: PollReply }> {
  const response = await fetch(`${origin}${init.prefix ?? '/comet'}/subscribe?${subscribeQuery(cursors)}`, {
    ...(init.signal === undefined ? {} : { signal: init.signal }),
    ...(init.headers === undefined ? {} : { headers: init.headers })
  })
  return { status: response.status, headers: response.headers, body: await response.json() as PollReply }
}

/** POST {prefix}/publish/<channel> with a JSON body (or none when data is undefined). */
export async function publish (origin: string, channel: string, data?: unknown): Promise<{ status: number, body: any }> {
  const init: RequestInit = { method: 'POST' }
  if (data !== undefined) {
    init.headers = { 'content-type': 'application/json' }
    init.body = JSON.stringify(data)
  }
  const response = await fetch(`${origin}/comet/publish/${encodeURIComponent(channel)}`, init)
  return { status: response.status, body: await response.json() }
}

/**
 * The program and arguments that run `command` as a user's shell would, outside tap's hooks: tap
 * (@tapjs/processinfo) puts its coverage loaders in NODE_OPTIONS of every child process, even one
 * given a clean env. They change how Node.js loads modules (each extensionless file is declared
 * CommonJS), and coverage of code compiled by another loader (tsx) would blur the report.
 */
export function outsideTap (command: string, args: readonly string[]): [string, string[]] {
  return ['env', ['-u', 'NODE_OPTIONS', command, ...args]]
}

/** Resolves after `ms` milliseconds. */
export function sleep (ms: number): Promise<void> {
  return new Promise(resolve => setTimeout(resolve, ms))
}

/** Polls `condition` every few milliseconds until it holds, for at most `timeoutMs`. */
export async function eventually (condition: () => boolean | Promise<boolean>, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!await condition()) {
    if (Date.now() > deadline) throw new Error('condition did not hold in time')
    await sleep(5)
  }
}

/**
 * Resolves as `promise` does, or rejects once `ms` milliseconds have passed: a deadline far below
 * the poll timeout turns a bug that only delays an answer (a poll left to time out) into a quick
 * failure instead of a slow pass.
 */
export async function within<T> (promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms)
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

/** The counters and gauges of stats(), without the latency histogram (its sums vary with timing). */
export function counters (stats: CometStats): Omit<CometStats, 'publishToAnswerMs'> {
  const { publishToAnswerMs: _histogram, ...rest } = stats
  return rest
}

/** stats() counters with nothing counted yet, and `changes` on top. */
export function countersWith (changes: Partial<Omit<CometStats, 'publishToAnswerMs'>>): Omit<CometStats, 'publishToAnswerMs'> {
  return {
    channels: 0,
    pending: 0,
    published: 0,
    delivered: 0,
    answered: { events: 0, timeout: 0, wait0: 0, close: 0, superseded: 0 },
    hangUps: 0,
    gaps: 0,
    errors: {},
    streams: { open: 0, messages: 0, bytes: 0, ended: { 'hang-up': 0, slow: 0, lifetime: 0, close: 0, error: 0 } },
    ...changes
  }
}
