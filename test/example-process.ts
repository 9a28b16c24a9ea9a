// The example server as `npm start` runs it: a child process, outside tap's hooks, on 127.0.0.1.
import { spawn, type ChildProcessByStdio } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import type { Readable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import type { Test } from 'tap'
import { outsideTap } from './helpers.js'

const repoRoot = fileURLToPath(new URL('..', import.meta.url))

/**
 * The arguments of `node` in package.json's start script, so that the tests run the chat exactly as
 * `npm start` does (with the condition that resolves 'fastify-comet' to the sources).
 */
export function startScriptArguments (): string[] {
  const { scripts } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { scripts: { start: string } }
  const [program, ...args] = scripts.start.split(' ')
  if (program !== 'node' || args.some(arg => arg === '' || /["'$&|;]/.test(arg))) throw new Error(`the start script is no longer a plain \`node …\`: ${scripts.start}`)
  return args
}

export interface ExampleServer {
  /** http://127.0.0.1:<port> */
  origin: string
  port: number
  /** What the process has printed on stdout so far. */
  output: () => string
  /** What it has printed on stderr so far. */
  errors: () => string
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

type ExampleProcess = ChildProcessByStdio<null, Readable, Readable>

/** Spawns the chat as `npm start` runs it, with these settings; killed when the test ends, if it still runs. */
function spawnExample (t: Test, { port = 0, redisUrl, workers }: ExampleOptions): { server: ExampleProcess, exited: Promise<[number | null, NodeJS.Signals | null]> } {
  const env: NodeJS.ProcessEnv = { ...process.env, PORT: String(port), HOST: '127.0.0.1' }
  delete env.REDIS_URL
  delete env.WORKERS
  delete env.LOG_LEVEL
  if (redisUrl !== undefined) env.REDIS_URL = redisUrl
  if (workers !== undefined) env.WORKERS = String(workers)
  const server: ExampleProcess = spawn(...outsideTap(process.execPath, startScriptArguments()), {
    cwd: repoRoot,
    // As `npm start` runs it: with the example's own log level.
    env,
    stdio: ['ignore', 'pipe', 'pipe']
  })
  const exited = once(server, 'exit') as Promise<[number | null, NodeJS.Signals | null]>
  t.teardown(async () => {
    if (server.exitCode === null && server.signalCode === null) {
      server.kill('SIGKILL')
      await exited
    }
  })
  server.stdout.setEncoding('utf8')
  server.stderr.setEncoding('utf8')
  return { server, exited }
}

/**
 * Runs the chat with settings it cannot start with, and resolves once it ends, to its exit code and
 * everything it printed. Killed (and so a failure) if it is still running after `timeoutMs`.
 */
export async function runExampleToExit (t: Test, options: ExampleOptions, timeoutMs = 20_000): Promise<{ code: number | null, stdout: string, stderr: string }> {
  const { server, exited } = spawnExample(t, options)
  let stdout = ''
  let stderr = ''
  server.stdout.on('data', (chunk: string) => { stdout += chunk })
  server.stderr.on('data', (chunk: string) => { stderr += chunk })
  const timer = setTimeout(() => server.kill('SIGKILL'), timeoutMs)
  const [code] = await exited.finally(() => clearTimeout(timer))
  return { code, stdout, stderr }
}

/**
 * Starts example/chat/server.ts on `port` and resolves once it listens (every worker, for a cluster).
 * The process is killed when the test ends, if it still runs.
 */
export async function startExample (t: Test, options: ExampleOptions = {}): Promise<ExampleServer> {
  const { server, exited } = spawnExample(t, options)

  // In every mode, one line with the address to open once it listens (every worker, for a
  // cluster). Everything printed is kept (up to a bound), so that a test can see what a user would;
  // stderr is passed on too, for the test's log.
  const listening = /^Chat ready: open (http:\/\/127\.0\.0\.1:\d+) in two browser windows/m
  let output = ''
  let errors = ''
  server.stderr.on('data', (chunk: string) => {
    if (errors.length < 1_000_000) errors += chunk
    process.stderr.write(chunk)
  })
  const origin = await new Promise<string>((resolve, reject) => {
    server.stdout.on('data', (chunk: string) => {
      if (output.length < 1_000_000) output += chunk
      const address = listening.exec(output)?.[1]
      if (address !== undefined) resolve(address)
    })
    void exited.then(([code]) => { reject(new Error(`the example exited with ${String(code)} before listening:\n${output}${errors}`)) })
  })

  return {
    origin,
    port: Number(new URL(origin).port),
    output: () => output,
    errors: () => errors,
    async stop (signal) {
      server.kill(signal)
      const [code] = await exited
      return code
    }
  }
}
