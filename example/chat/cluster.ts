// `WORKERS=<n> REDIS_URL=… npm start`: n processes of the chat on one port, with node:cluster. The
// primary accepts the connections and hands each to a worker in turn, with no stickiness: the
// polls of one page land on any process, which is what the Redis engine is for. It also gathers
// the workers' metrics for /metrics (metrics.ts).
import cluster, { type Worker } from 'node:cluster'
import { answerMetricsRequests } from './metrics.js'

export interface ClusterOptions {
  workers: number
  /** Called once, when every worker listens, with the port they share. */
  onListening: (port: number) => void
}

/** Forks the workers, replaces one that dies, and stops them all on SIGINT or SIGTERM. */
export function runCluster ({ workers, onListening }: ClusterOptions): void {
  // Plain lines on stderr, for what goes wrong: stdout has the one line saying the chat is ready.
  const warn = (message: string): void => { console.error(`chat: ${message}`) }
  const died = (worker: Worker, code: number | null, signal: string | null): string =>
    `worker ${worker.process.pid} ${signal === null ? `exited with code ${code}` : `was killed by ${signal}`}`
  let closing = false
  let ready = false
  const listening = new Set<number>()

  answerMetricsRequests()
  cluster.on('listening', (worker, address) => {
    listening.add(worker.id)
    // Port 0: the primary chose one port for all, so every worker reports the same.
    if (!ready && listening.size === workers) {
      ready = true
      onListening(address.port)
    }
  })
  cluster.on('exit', (worker, code, signal) => {
    const hadListened = listening.delete(worker.id)
    if (closing) return
    if (!hadListened) {
      // It failed while starting (it said why on stderr): another would too. Stop them all.
      warn(`${died(worker, code, signal)} before listening; stopping the chat`)
      process.exitCode = 1
      closing = true
      for (const other of Object.values(cluster.workers ?? {})) other?.process.kill('SIGTERM')
      return
    }
    warn(`${died(worker, code, signal)}; starting another`)
    cluster.fork()
  })

  // The workers close their servers (answering waiting polls) on the signal; a second one kills them.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      const running = Object.values(cluster.workers ?? {}).filter((worker): worker is Worker => worker !== undefined)
      for (const worker of running) worker.process.kill(closing ? 'SIGKILL' : signal)
      closing = true
    })
  }

  for (let i = 0; i < workers; i++) cluster.fork()
}
