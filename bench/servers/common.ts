// What every contender's server process shares: a control server on a port of its own, apart from
// the contender's, and the signal to the harness that the process is ready.
//
// The control server answers three requests, each cheap and the same for every contender:
// - POST /publish?ch=<channel>&seq=<n>&t=<ms>: publishes {seq, t} on the channel through the
//   contender's own server-side API, and answers once that call has returned (or resolved);
// - GET /stats[?gc=1]: the process's own CPU and memory counters (after two full GCs with gc=1),
//   the bytes it allocated on the V8 heap since it started (read before those GCs), and how many
//   requests are open on the contender's server;
// - GET /open?atLeast=<n>: answers once at least n requests are open on the contender's server,
//   so the driver learns that its subscribers are parked without polling.
// The open-request gauge is one 'request' listener and one 'close' listener per response on the
// contender's server (per socket, for an upgrade to WebSocket): the same small cost for everyone.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { HeapAllocations } from './heap-allocations.js'
import { PhaseProfiles } from './phase-profiles.js'

export const host = '127.0.0.1'

/** What every message carries: a per-channel sequence number and the publisher's send time. */
export interface BenchMessage {
  seq: number
  /** Milliseconds since the Unix epoch, with a fraction (performance.timeOrigin + performance.now()). */
  t: number
}

export interface ServerStats {
  /** process.cpuUsage(), microseconds. */
  cpu: { user: number, system: number }
  /** process.memoryUsage(), bytes. */
  memory: { rss: number, heapUsed: number, heapTotal: number, external: number, arrayBuffers: number }
  /** Bytes allocated on the V8 heap since the process began to serve (see heap-allocations.ts): a running count, for deltas. */
  allocatedBytes: number
  /** Requests open on the contender's server: parked long-polls, mostly. */
  open: number
}

export interface Contender {
  /** The contender's HTTP server, where subscribers connect; its own 'request' listeners are attached already. */
  server: Server
  publish (channel: string, message: BenchMessage): unknown
}

/** Long-polls are held this long by every contender: far longer than any phase of a run. */
export const pollTimeoutSeconds = 120

const keepAliveMs = 600_000

/** Runs a contender with the control server, and prints one JSON line with both ports when ready. */
export async function serveContender (contender: Contender): Promise<void> {
  const allocations = new HeapAllocations()
  const phaseProfilesDirectory = process.env.BENCH_CPU_PROF_PHASES
  const phaseProfiles = phaseProfilesDirectory === undefined ? undefined : new PhaseProfiles(phaseProfilesDirectory)
  await phaseProfiles?.start()
  // The harness stops a server with SIGTERM: exit normally, so 'exit' handlers and --cpu-prof run.
  for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => process.exit(0))
  const { server } = contender
  // Idle keep-alive connections of the driver's pool must outlive a whole phase.
  server.keepAliveTimeout = keepAliveMs
  server.headersTimeout = keepAliveMs + 1000
  server.requestTimeout = 0

  let open = 0
  const openWaiters: Array<{ atLeast: number, response: ServerResponse }> = []
  server.on('request', (_request: IncomingMessage, response: ServerResponse) => {
    open++
    response.once('close', () => { open-- })
    if (openWaiters.length > 0) answerOpenWaiters()
  })
  // A WebSocket (socket.io-ws) is an upgraded request, open while its socket is.
  server.on('upgrade', (_request: IncomingMessage, socket: Socket) => {
    open++
    socket.once('close', () => { open-- })
    if (openWaiters.length > 0) answerOpenWaiters()
  })
  function answerOpenWaiters (): void {
    for (let i = openWaiters.length - 1; i >= 0; i--) {
      const waiter = openWaiters[i] as { atLeast: number, response: ServerResponse }
      if (open < waiter.atLeast) continue
      openWaiters.splice(i, 1)
      sendJson(waiter.response, { open })
    }
  }

  const control = createServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://control')
    if (request.method === 'POST' && url.pathname === '/publish') {
      const channel = url.searchParams.get('ch') ?? ''
      const message = { seq: Number(url.searchParams.get('seq')), t: Number(url.searchParams.get('t')) }
      request.resume()
      Promise.resolve(contender.publish(channel, message)).then(
        () => sendJson(response, { ok: true }),
        (error: unknown) => sendJson(response, { error: String(error) }, 500)
      )
    } else if (url.pathname === '/stats') {
      const allocatedBytes = allocations.read()
      if (url.searchParams.get('gc') === '1' && globalThis.gc !== undefined) {
        globalThis.gc()
        globalThis.gc()
      }
      const { rss, heapUsed, heapTotal, external, arrayBuffers } = process.memoryUsage()
      const stats: ServerStats = { cpu: process.cpuUsage(), memory: { rss, heapUsed, heapTotal, external, arrayBuffers }, allocatedBytes, open }
      sendJson(response, stats)
      // After the answer, so that the driver's phase starts as it would without a profile.
      void phaseProfiles?.cut()
    } else if (url.pathname === '/open') {
      openWaiters.push({ atLeast: Number(url.searchParams.get('atLeast')), response })
      answerOpenWaiters()
    } else {
      sendJson(response, { error: 'not found' }, 404)
    }
  })
  control.keepAliveTimeout = keepAliveMs
  control.requestTimeout = 0

  // A Fastify app's server listens like any other once the app is ready.
  const port = await listen(server)
  const controlPort = await listen(control)
  process.stdout.write(`${JSON.stringify({ ready: true, port, controlPort, pid: process.pid })}\n`)
}

function listen (server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, host, () => resolve((server.address() as AddressInfo).port))
  })
}

function sendJson (response: ServerResponse, value: unknown, status = 200): void {
  const body = JSON.stringify(value)
  response.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
  response.end(body)
}
