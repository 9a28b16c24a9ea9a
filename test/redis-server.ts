// A private redis-server for the Redis tests, on a free port of 127.0.0.1, which a test may shut
// down, restart and snapshot. Never the shared instance on 6379. Stopped when the test ends.
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'
import { Redis } from 'ioredis'
import { RedisEngine } from '../lib/engines/redis/index.js'
import type { CometOptions } from '../plugin.js'
import { eventually, serve, type Served } from './helpers.js'

export interface RedisServer {
  readonly port: number
  /** redis://127.0.0.1:<port> */
  readonly url: string
  /** A client for the test's own commands (SAVE, CLIENT KILL, INFO…), closed at the end. */
  admin (): Redis
  /** SHUTDOWN NOSAVE: the process exits and every connection drops at once. */
  shutdown (): Promise<void>
  /** A port where nothing listens. */
  freePort (): Promise<number>
  /** Starts redis-server again on the same port and folder (loading dump.rdb if one was saved). */
  start (): Promise<void>
  /** SIGSTOP: connections stay open, and what clients send waits unanswered in the socket. */
  suspend (): void
  /** SIGCONT after suspend(): what waited in the sockets is answered. */
  resume (): void
  /** SIGKILL (suspended or not): a crash, every connection drops with what was under way. */
  crash (): Promise<void>
}

export async function freePort (): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  server.close()
  await once(server, 'close')
  return port
}

/** With `cluster`, a Redis Cluster of one node that serves every slot. */
export async function startRedis (t: Test, { cluster = false } = {}): Promise<RedisServer> {
  const port = await freePort()
  const dir = await mkdtemp(join(tmpdir(), 'fastify-comet-redis-'))
  let child: ChildProcess | undefined
  const admins: Redis[] = []

  async function start (): Promise<void> {
    // No automatic snapshots and no AOF: a restart loses everything unless a test ran SAVE.
    const clusterArgs = cluster ? ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-announce-ip', '127.0.0.1'] : []
    const started = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, ...clusterArgs], { stdio: ['ignore', 'pipe', 'inherit'] })
    child = started
    let output = ''
    await new Promise<void>((resolve, reject) => {
      started.stdout?.on('data', (chunk: Buffer) => {
        output += chunk.toString()
        if (output.includes('Ready to accept connections')) resolve()
      })
      started.once('exit', code => reject(new Error(`redis-server exited (${code}) before it was ready:\n${output}`)))
    })
    started.stdout?.resume()
  }

  async function shutdown (): Promise<void> {
    const running = child
    if (running === undefined || running.exitCode !== null) return
    const exited = once(running, 'exit')
    const client = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0 })
    await client.connect()
    // SHUTDOWN replies only by closing the connection.
    await client.call('SHUTDOWN', 'NOSAVE').catch(() => {})
    client.disconnect()
    await exited
    child = undefined
  }

  async function crash (): Promise<void> {
    const running = child as ChildProcess
    const exited = once(running, 'exit')
    running.kill('SIGKILL')
    await exited
    child = undefined
  }

  t.teardown(async () => {
    for (const admin of admins) admin.disconnect()
    const running = child
    if (running !== undefined && running.exitCode === null) {
      running.kill('SIGKILL')
      await once(running, 'exit')
    }
    await rm(dir, { recursive: true, force: true })
  })
  await start()
  if (cluster) {
    const client = new Redis(port, '127.0.0.1')
    await client.call('CLUSTER', 'ADDSLOTSRANGE', '0', '16383')
    while (!(await client.call('CLUSTER', 'INFO') as string).includes('cluster_state:ok')) await new Promise(resolve => setTimeout(resolve, 50))
    client.disconnect()
  }
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    admin () {
      const admin = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 1, retryStrategy: () => 100 })
      admin.on('error', () => {})
      admins.push(admin)
      return admin
    },
    shutdown,
    start,
    suspend: () => { child?.kill('SIGSTOP') },
    resume: () => { child?.kill('SIGCONT') },
    crash,
    freePort
  }
}

/** The plugin on a RedisEngine of its own on `redis`, once the engine's first connection is made. */
export async function serveOnRedis (t: Test, redis: RedisServer, options: CometOptions = {}): Promise<Served & { engine: RedisEngine }> {
  const engine = new RedisEngine({ redis: redis.url })
  t.teardown(() => engine.close())
  const served = await serve(t, { engine, ...options })
  await eventually(() => engine.health().connected)
  return { ...served, engine }
}
