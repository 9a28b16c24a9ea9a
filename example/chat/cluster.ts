// `WORKERS=<n> REDIS_URL=… npm start`: n processes of the chat on one port, with node:cluster. The
// primary accepts the connections and hands each to a worker in turn, with no stickiness: the
// polls of one page land on any process, which is what the Redis engine is for.
import cluster, { type Worker } from 'node:cluster'

export interface ClusterOptions {
  workers: number
  port: number
  host: string
}

/** Forks the workers, replaces one that dies, and stops them all on SIGINT or SIGTERM. */
export function runCluster ({ workers, port, host }: ClusterOptions): void {
  const log = (msg: string, extra: Record<string, unknown> = {}): void => {
    // One JSON line, as the workers' Fastify logger writes.
    process.stdout.write(`${JSON.stringify({ level: 30, time: Date.now(), pid: process.pid, ...extra, msg })}\n`)
  }
  let closing = false
  const listening = new Set<number>()

  cluster.on('listening', (worker, address) => {
    listening.add(worker.id)
    // Port 0: the primary chose one port for all, so every worker reports the same.
    if (listening.size === workers) log(`Cluster of ${workers} workers listening at http://${address.address ?? host}:${address.port}`)
  })
  cluster.on('exit', (worker, code, signal) => {
    const hadListened = listening.delete(worker.id)
    if (closing) {
      if (Object.keys(cluster.workers ?? {}).length === 0) log('all workers stopped')
      return
    }
    if (!hadListened) {
      // It failed while starting (Redis unreachable, say): another would too. Stop them all.
      log('a worker failed before listening; stopping', { worker: worker.process.pid, code, signal })
      process.exitCode = 1
      closing = true
      for (const other of Object.values(cluster.workers ?? {})) other?.process.kill('SIGTERM')
      return
    }
    log('a worker stopped; starting another', { worker: worker.process.pid, code, signal })
    cluster.fork()
  })

  // The workers close their servers (answering waiting polls) on the signal; a second one kills them.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      const running = Object.values(cluster.workers ?? {}).filter((worker): worker is Worker => worker !== undefined)
      log('closing', { signal })
      for (const worker of running) worker.process.kill(closing ? 'SIGKILL' : signal)
      closing = true
    })
  }

  log(`starting ${workers} workers`, { port, host })
  for (let i = 0; i < workers; i++) cluster.fork()
}
