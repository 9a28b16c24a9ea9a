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
  /** Sends `signal` and resolves to the exit code (null when the signal killed it). */
  stop: (signal: NodeJS.Signals) => Promise<number | null>
}

/**
 * Starts example/server.ts on `port` (0: a free one) and resolves once it listens. The process is
 * killed when the test ends, if it still runs.
 */
export async function startExample (t: Test, { port = 0 } = {}): Promise<ExampleServer> {
  const server: ChildProcessByStdio<null, Readable, null> = spawn(...outsideTap(process.execPath, ['--import=tsx', 'example/server.ts']), {
    cwd: repoRoot,
    env: { ...process.env, PORT: String(port), HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'inherit']
  })
  const exited = once(server, 'exit') as Promise<[number | null, NodeJS.Signals | null]>
  t.teardown(async () => {
    if (server.exitCode === null && server.signalCode === null) {
      server.kill('SIGKILL')
      await exited
    }
  })

  // Fastify's logger prints one JSON line per event; the listening one names the address.
  let output = ''
  const origin = await new Promise<string>((resolve, reject) => {
    server.stdout.setEncoding('utf8')
    server.stdout.on('data', (chunk: string) => {
      output += chunk
      const address = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(output)?.[1]
      if (address !== undefined) {
        // Keep reading, so that the server never blocks on a full pipe, but stop keeping it.
        output = ''
        server.stdout.removeAllListeners('data')
        server.stdout.resume()
        resolve(address)
      }
    })
    void exited.then(([code]) => { reject(new Error(`the example exited with ${String(code)} before listening:\n${output}`)) })
  })

  return {
    origin,
    port: Number(new URL(origin).port),
    async stop (signal) {
      server.kill(signal)
      const [code] = await exited
      return code
    }
  }
}
