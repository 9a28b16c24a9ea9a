// Attacks a fastify-comet server the way a hostile client would, and reports what it cost the server:
// pending polls, peak RSS and heap, and whether the process survived. Every loop is bounded in count
// and time, and targets only 127.0.0.1.
//   node --import=tsx bench/attack.ts pipelined|pipelined-max-pending|flood|amplify [--heap=<MiB>] [--most=<publishes>]
// The server is a child process with the plugin's default options (Fastify without a logger), on
// the default heap unless --heap sets its --max-old-space-size (the default historyBytes follows);
// it samples its own memory every 20 ms and answers GET /__stats. --most bounds the flood's
// publishes (default 60,000: 3.7 GiB in all).
import { spawn } from 'node:child_process'
import { connect } from 'node:net'
import { fileURLToPath } from 'node:url'
import { getHeapStatistics } from 'node:v8'
import Fastify from 'fastify'

const host = '127.0.0.1'

interface ServerStats {
  pending: number
  channels: number
  rss: number
  heapUsed: number
  peakRss: number
  peakHeapUsed: number
  heapLimit: number
}

if (process.argv[2] === '--serve') {
  const { default: comet } = await import('../plugin.js')
  const app = Fastify()
  const options = JSON.parse(process.argv[3] ?? '{}') as Record<string, unknown>
  await app.register(comet, options)
  let peakRss = 0
  let peakHeapUsed = 0
  setInterval(() => {
    const { rss, heapUsed } = process.memoryUsage()
    peakRss = Math.max(peakRss, rss)
    peakHeapUsed = Math.max(peakHeapUsed, heapUsed)
  }, 20).unref()
  app.get('/__stats', async () => {
    const { rss, heapUsed } = process.memoryUsage()
    const { pending, channels } = app.comet.stats()
    return { pending, channels, rss, heapUsed, peakRss: Math.max(peakRss, rss), peakHeapUsed: Math.max(peakHeapUsed, heapUsed), heapLimit: getHeapStatistics().heap_size_limit } satisfies ServerStats
  })
  await app.listen({ port: 0, host })
  process.stdout.write(`${JSON.stringify({ port: (app.server.address() as { port: number }).port })}\n`)
} else {
  await attack(process.argv[2] ?? '')
}

function option (name: string): number | undefined {
  const given = process.argv.find(a => a.startsWith(`--${name}=`))
  return given === undefined ? undefined : Number(given.slice(name.length + 3))
}

async function attack (scenario: string): Promise<void> {
  const scenarios: Record<string, () => Promise<Record<string, unknown>>> = {
    // Issue 12, item 1: 10,000 pipelined polls on 5 sockets, then the sockets close.
    pipelined: async () => {
      const server = await startServer({})
      try {
        const sockets = await pipeline(server.port, 5, 2000)
        await sleep(1000)
        const whileOpen = await server.stats()
        for (const socket of sockets) socket.destroy()
        await sleep(1000)
        const after = await server.stats()
        return { pendingWhileOpen: whileOpen.pending, pendingAfterClose: after.pending, peakRssMiB: mib(after.peakRss), peakHeapMiB: mib(after.peakHeapUsed) }
      } finally { server.stop() }
    },
    // Issue 12, item 1: maxPending 50, 60 pipelined polls on one socket that closes, then 10 new clients.
    'pipelined-max-pending': async () => {
      const server = await startServer({ maxPending: 50 })
      try {
        const [socket] = await pipeline(server.port, 1, 60)
        await sleep(500)
        socket?.destroy()
        await sleep(500)
        const pendingAfterClose = (await server.stats()).pending
        const statuses = await Promise.all(Array.from({ length: 10 }, async (_, i) => {
          const response = await fetch(`${server.origin}/comet/subscribe?subscribed[new${i}]=0&wait=1`, { signal: AbortSignal.timeout(1000) }).catch(() => undefined)
          return response?.status ?? 'waiting'
        }))
        return { pendingAfterClose, refusedOf10: statuses.filter(s => s === 503).length }
      } finally { server.stop() }
    },
    // Issue 12, item 2: 16 loops publishing a 64 KB JSON string each to new channels.
    flood: async () => {
      const server = await startServer({})
      const body = JSON.stringify('x'.repeat(65_000))
      let published = 0
      let failed = 0
      const started = Date.now()
      const most = option('most') ?? 60_000
      const deadline = started + 240_000
      try {
        await Promise.all(Array.from({ length: 16 }, async (_, loop) => {
          while (published + failed < most && Date.now() < deadline && server.alive()) {
            const n = published + failed
            const ok = await fetch(`${server.origin}/comet/publish/flood-${loop}-${n}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body })
              .then(async r => { await r.arrayBuffer(); return r.ok }, () => false)
            if (ok) published++
            else failed++
          }
        }))
        const alive = server.alive()
        const stats = alive ? await server.stats() : undefined
        return { survived: alive, published, failed, publishedMiB: mib(published * body.length), seconds: (Date.now() - started) / 1000, channels: stats?.channels, heapLimitMiB: stats && mib(stats.heapLimit), peakRssMiB: stats && mib(stats.peakRss), peakHeapMiB: stats && mib(stats.peakHeapUsed), exit: server.exit() }
      } finally { server.stop() }
    },
    // Issue 12, item 3: 32 channels of 100 × 64 KB, then 16 requests for all of it at once.
    amplify: async () => {
      const server = await startServer({})
      const body = JSON.stringify('x'.repeat(65_000))
      try {
        for (let channel = 0; channel < 32; channel++) {
          await Promise.all(Array.from({ length: 100 }, () => fetch(`${server.origin}/comet/publish/c${channel}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body }).then(r => r.arrayBuffer())))
        }
        const filled = await server.stats()
        const query = Array.from({ length: 32 }, (_, c) => `subscribed[c${c}]=all`).join('&')
        const started = Date.now()
        const sizes = await Promise.all(Array.from({ length: 16 }, async () => {
          const response = await fetch(`${server.origin}/comet/subscribe?${query}`, { signal: AbortSignal.timeout(60_000) }).catch(() => undefined)
          return response === undefined ? 0 : (await response.arrayBuffer().catch(() => new ArrayBuffer(0))).byteLength
        }))
        await sleep(200)
        const alive = server.alive()
        const stats = alive ? await server.stats() : undefined
        return {
          survived: alive,
          requestBytes: `/comet/subscribe?${query}`.length,
          replyMiB: sizes.map(mib),
          seconds: (Date.now() - started) / 1000,
          heapAfterFillMiB: mib(filled.heapUsed),
          peakRssMiB: stats && mib(stats.peakRss),
          peakHeapMiB: stats && mib(stats.peakHeapUsed),
          exit: server.exit()
        }
      } finally { server.stop() }
    }
  }
  const run = scenarios[scenario]
  if (run === undefined) throw new Error(`unknown scenario "${scenario}"; one of ${Object.keys(scenarios).join(', ')}`)
  console.log(JSON.stringify({ scenario, node: process.version, ...await run() }))
}

interface RunningServer {
  port: number
  origin: string
  stats (): Promise<ServerStats>
  alive (): boolean
  exit (): string | undefined
  stop (): void
}

async function startServer (options: Record<string, unknown>): Promise<RunningServer> {
  const heap = option('heap')
  const heapArguments = heap === undefined ? [] : [`--max-old-space-size=${heap}`]
  const child = spawn(process.execPath, [...process.execArgv, ...heapArguments, fileURLToPath(import.meta.url), '--serve', JSON.stringify(options)], { stdio: ['ignore', 'pipe', 'pipe'] })
  let exit: string | undefined
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', chunk => { stderr = (stderr + String(chunk)).slice(-2000) })
  child.once('exit', (code, signal) => { exit = `${signal ?? `code ${String(code)}`}${/heap out of memory/.test(stderr) ? ': JavaScript heap out of memory' : ''}` })
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout.setEncoding('utf8').once('data', line => { resolve((JSON.parse(String(line)) as { port: number }).port) })
    child.once('exit', () => { reject(new Error(`server exited: ${stderr}`)) })
  })
  const origin = `http://${host}:${port}`
  return {
    port,
    origin,
    stats: async () => await (await fetch(`${origin}/__stats`)).json() as ServerStats,
    alive: () => exit === undefined,
    exit: () => exit,
    stop: () => { if (exit === undefined) child.kill() }
  }
}

/** `perSocket` pipelined subscribes on each of `sockets` connections, written at once. */
async function pipeline (port: number, sockets: number, perSocket: number): Promise<ReturnType<typeof connect>[]> {
  return await Promise.all(Array.from({ length: sockets }, (_, s) => new Promise<ReturnType<typeof connect>>(resolve => {
    const socket = connect(port, host, () => {
      let requests = ''
      for (let i = 0; i < perSocket; i++) requests += `GET /comet/subscribe?subscribed[s${s}-${i}]=0 HTTP/1.1\r\nHost: ${host}\r\n\r\n`
      socket.write(requests)
      resolve(socket)
    })
    socket.on('error', () => {})
    socket.resume()
  })))
}

function sleep (ms: number): Promise<void> {
  return new Promise(resolve => setTimeout(resolve, ms))
}

function mib (bytes: number): number {
  return Math.round(bytes / 2 ** 20 * 10) / 10
}
