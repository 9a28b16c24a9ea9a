// A private redis-server for the benchmark, on a free port of 127.0.0.1: never the shared one on
// 6379. The harness kills it and starts it again (empty) for the restart scenario, and reads its
// CPU and command counters (INFO). The tests have their own, tied to tap: test/redis-server.ts.
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { createConnection, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface RedisServer {
  readonly port: number
  /** redis://127.0.0.1:<port> */
  readonly url: string
  /** The pid of the redis-server running now (it changes on restart). */
  readonly pid: number
  /** Kills it (SIGKILL): what it held is lost, as in a crash of a Redis without persistence. */
  stop (): Promise<void>
  /** Starts it again on the same port, empty. */
  start (): Promise<void>
  /** Stops it for good and removes its directory. */
  close (): Promise<void>
}

/** A TCP port that was free a moment ago. */
export async function freePort (): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const address = server.address()
  server.close()
  if (address === null || typeof address === 'string') throw new Error('expected a TCP address')
  return address.port
}

/** Starts redis-server on a free port of 127.0.0.1; resolves once it accepts connections. */
export async function startRedisServer (): Promise<RedisServer> {
  const port = await freePort()
  const directory = mkdtempSync(join(tmpdir(), 'comet-redis-'))
  const args = [
    '--port', String(port), '--bind', '127.0.0.1', '--dir', directory,
    // Nothing saved: no snapshots, no append-only file.
    '--save', '', '--appendonly', 'no',
    '--loglevel', 'warning', '--logfile', join(directory, 'redis.log')
  ]
  let child: ChildProcess | undefined

  const start = async (): Promise<void> => {
    const started = spawn('redis-server', args, { stdio: 'ignore' })
    child = started
    const exited = once(started, 'exit')
    // Connection refused until it listens; give up if it exits or takes over ten seconds.
    const deadline = Date.now() + 10_000
    for (;;) {
      if (started.exitCode !== null) throw new Error(`redis-server exited with ${started.exitCode}; see ${directory}/redis.log`)
      if (await answersPing(port)) return
      if (Date.now() > deadline) {
        started.kill('SIGKILL')
        await exited
        throw new Error(`redis-server did not listen on ${port} within 10 s`)
      }
      await new Promise(resolve => setTimeout(resolve, 20))
    }
  }

  const stop = async (): Promise<void> => {
    const running = child
    if (running === undefined || running.exitCode !== null || running.signalCode !== null) return
    const exited = once(running, 'exit')
    running.kill('SIGKILL')
    await exited
  }

  await start()
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    get pid () { return child?.pid ?? -1 },
    stop,
    start,
    async close () {
      await stop()
      rmSync(directory, { recursive: true, force: true })
    }
  }
}

/** Sends one inline command and resolves to the first line of the answer. */
function command (port: number, line: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ port, host: '127.0.0.1' })
    let answer = ''
    socket.setEncoding('utf8')
    socket.setTimeout(2000, () => socket.destroy(new Error(`redis ${line}: no answer in 2 s`)))
    socket.on('connect', () => socket.write(`${line}\r\n`))
    socket.on('data', (chunk: string) => {
      answer += chunk
      if (answer.includes('\r\n')) {
        socket.end()
        resolve(answer.slice(0, answer.indexOf('\r\n')))
      }
    })
    socket.on('error', reject)
    // SHUTDOWN closes the connection without an answer.
    socket.on('close', () => resolve(answer))
  })
}

async function answersPing (port: number): Promise<boolean> {
  try {
    return await command(port, 'PING') === '+PONG'
  } catch {
    return false
  }
}

/** What redis-server has spent and done since it started: CPU and commands answered (INFO itself left out). */
export interface RedisCounters {
  /** used_cpu_user + used_cpu_sys of the server and its threads, in microseconds. */
  cpuUs: number
  /** Calls of every command, from INFO commandstats, except INFO. */
  commands: number
  /** Calls per command name, INFO left out. */
  byCommand: Record<string, number>
}

/** Reads INFO cpu and commandstats. */
export async function redisCounters (port: number): Promise<RedisCounters> {
  const info = await bulkCommand(port, 'INFO cpu commandstats')
  const number = (name: string): number => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)?.[1] ?? 0)
  const byCommand: Record<string, number> = {}
  let commands = 0
  for (const [, name, calls] of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
    if (name === 'info') continue
    byCommand[name as string] = Number(calls)
    commands += Number(calls)
  }
  return { cpuUs: Math.round((number('used_cpu_user') + number('used_cpu_sys')) * 1e6), commands, byCommand }
}

/** Sends one inline command whose answer is a bulk string, and resolves to that string. */
function bulkCommand (port: number, line: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ port, host: '127.0.0.1' })
    let answer = Buffer.alloc(0)
    socket.setTimeout(2000, () => socket.destroy(new Error(`redis ${line}: no answer in 2 s`)))
    socket.on('connect', () => socket.write(`${line}\r\n`))
    socket.on('data', (chunk: Buffer) => {
      answer = Buffer.concat([answer, chunk])
      const headEnd = answer.indexOf('\r\n')
      if (headEnd === -1) return
      const head = answer.toString('latin1', 0, headEnd)
      if (!head.startsWith('$')) {
        socket.destroy()
        reject(new Error(`redis ${line}: ${head}`))
        return
      }
      const length = Number(head.slice(1))
      if (answer.length < headEnd + 2 + length) return
      socket.end()
      resolve(answer.toString('utf8', headEnd + 2, headEnd + 2 + length))
    })
    socket.on('error', reject)
  })
}
