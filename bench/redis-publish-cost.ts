// What one publish costs on the Redis engine, with and without detectDataLoss (the run_id check
// by INFO server inside the script): `node --import=tsx bench/redis-publish-cost.ts [events]`.
// Starts a private redis-server on a free port, publishes the events 64 at a time through
// RedisEngine, and prints per publish: wall time, redis-server CPU (INFO cpu) and Redis commands
// (INFO commandstats, the script's inner commands included).
import { spawn } from 'node:child_process'
import { Redis } from 'ioredis'
import { RedisEngine } from '../lib/engines/redis/index.js'
import { freePort } from './redis-server.js'

const events = Number(process.argv[2] ?? 20_000)
const inFlight = 64

function infoNumbers (info: string): Map<string, number> {
  const numbers = new Map<string, number>()
  for (const line of info.split('\r\n')) {
    const cpu = /^(used_cpu_(?:user|sys)):([\d.]+)$/.exec(line)
    if (cpu !== null) numbers.set(cpu[1] as string, Number(cpu[2]))
    const calls = /^cmdstat_([^:]+):calls=(\d+)/.exec(line)
    if (calls !== null) numbers.set(calls[1] as string, Number(calls[2]))
  }
  return numbers
}

async function measure (redis: Redis, url: string, detectDataLoss: boolean): Promise<Record<string, string>> {
  const engine = new RedisEngine({ redis: url, detectDataLoss, keyPrefix: `cost-${String(detectDataLoss)}:` })
  await engine.publish('warm-up', '0')
  await redis.config('RESETSTAT')
  const before = infoNumbers(await redis.info('cpu'))
  const started = process.hrtime.bigint()
  let next = 0
  await Promise.all(Array.from({ length: inFlight }, async () => {
    while (next < events) {
      const n = next++
      await engine.publish(`channel-${n % 100}`, JSON.stringify({ n, text: 'hello' }))
    }
  }))
  const wallNs = Number(process.hrtime.bigint() - started)
  const after = infoNumbers(`${await redis.info('cpu')}\r\n${await redis.info('commandstats')}`)
  await engine.close()
  const cpuSeconds = (key: string): number => (after.get(key) ?? 0) - (before.get(key) ?? 0)
  const commands = [...after].filter(([key]) => !key.startsWith('used_cpu') && key !== 'info' && key !== 'config')
  return {
    detectDataLoss: String(detectDataLoss),
    'wall µs/publish': (wallNs / 1000 / events).toFixed(1),
    'redis CPU µs/publish': ((cpuSeconds('used_cpu_user') + cpuSeconds('used_cpu_sys')) * 1e6 / events).toFixed(1),
    'commands/publish': (commands.reduce((sum, [, calls]) => sum + calls, 0) / events).toFixed(1),
    'INFO calls/publish': (((after.get('info') ?? 0) - 2) / events).toFixed(1)
  }
}

const port = await freePort()
const server = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'inherit'] })
try {
  await new Promise<void>(resolve => server.stdout.on('data', (chunk: Buffer) => { if (chunk.toString().includes('Ready to accept')) resolve() }))
  const url = `redis://127.0.0.1:${port}`
  const redis = new Redis(url)
  const rows = []
  // Twice each, interleaved: the second pair is the one to read, once caches are warm.
  for (const detect of [true, false, true, false]) rows.push(await measure(redis, url, detect))
  console.table(rows.slice(2))
  redis.disconnect()
} finally {
  server.kill()
}
