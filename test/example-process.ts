// The example server as `npm start` runs it: a child process, outside tap's hooks, on 127.0.0.1.
import { spawn, type ChildProcessByStdio } from 'node:child_process'
import { once } from 'node:events'
import type { Readable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import type { Test } from 'tap'
import { outsideTap } from './helpers.js'

const repoRoot = fileURLToPath(new URL('..', import.meta.url))

export interface ExampleServer {
  /** http://127.0.0.1:<port> */
  origin: string
  port: number
  /** What the process has printed on stdout so far. */
  output: () => string
  /** Sends `signal` and resolves to the exit code (null when the signal killed it). */
  stop: (signal: NodeJS.Signals) => Promise<number | null>
}

export interface ExampleOptions {
  /** 0: a free one. */
  port?: number
  /** Runs the chat on Redis (REDIS_URL). */
  redisUrl?: string
  /** Runs it as this many processes of a node:cluster (WORKERS); needs redisUrl. */
  workers?: number
}

/**
 * Starts example/chat/server.ts on `port` and resolves once it listens (every worker, for a cluster).
 * The process is killed when the test ends, if it still runs.
 */
export async function startExample (t: Test, { port = 0, redisUrl, workers }: ExampleOptions = {}): Promise<ExampleServer> {
  const env: NodeJS.ProcessEnv = { ...process.env, PORT: String(port), HOST: '127.0.0.1' }
  delete env.REDIS_URL
  delete env.WORKERS
  delete env.LOG_LEVEL
  if (redisUrl !== undefined) env.REDIS_URL = redisUrl
  if (workers !== undefined) env.WORKERS = String(workers)
  const server: ChildProcessByStdio<null, Readable, null> = spawn(...outsideTap(process.execPath, ['--import=tsx', 'example/chat/server.ts']), {
    cwd: repoRoot,
    // As `npm start` runs it: with the example's own log level.
    env,
    stdio: ['ignore', 'pipe', 'inherit']
  })
  const exited = once(server, 'exit') as Promise<[number | null, NodeJS.Signals | null]>
  t.teardown(async () => {
    if (server.exitCode === null && server.signalCode === null) {
      server.kill('SIGKILL')
      await exited
    }
  })

  // A single process prints one line with the address to open once it listens; a cluster's
  // primary logs once all its workers listen. Everything printed is kept (up to a bound), so that
  // a test can see what a user would.
  const listening = workers === undefined || workers === 1
    ? /^Chat ready: open (http:\/\/127\.0\.0\.1:\d+) in two browser windows/m
    : /Cluster of \d+ workers listening at (http:\/\/127\.0\.0\.1:\d+)/
  let output = ''
  const origin = await new Promise<string>((resolve, reject) => {
    server.stdout.setEncoding('utf8')
    server.stdout.on('data', (chunk: string) => {
      if (output.length < 1_000_000) output += chunk
      const address = listening.exec(output)?.[1]
      if (address !== undefined) resolve(address)
    })
    void exited.then(([code]) => { reject(new Error(`the example exited with ${String(code)} before listening:\n${output}`)) })
  })

  return {
    origin,
    port: Number(new URL(origin).port),
    output: () => output,
    async stop (signal) {
      server.kill(signal)
      const [code] = await exited
      return code
    }
  }
}
