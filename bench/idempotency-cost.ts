// What an idempotency key costs per publish, on each engine, through fastify.comet.publish():
// publishes per second and CPU per publish, without a key and with a fresh key each time, in one
// run, trials interleaved. With --baseline=<dir> (a checkout of the code before keys, with its
// node_modules), its publishes without a key are measured in the same run too, to show that they
// cost what they cost before.
//   node --import=tsx bench/idempotency-cost.ts [--events=50000] [--redis-events=5000] [--trials=5] [--baseline=/tmp/comet-main]
// The Redis engine runs on a private redis-server on a free port; its CPU (INFO cpu) is counted
// with this process's.
import { spawn } from 'node:child_process'
import { pathToFileURL } from 'node:url'
import Fastify, { type FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import { freePort } from './redis-server.js'

const argument = (name: string, fallback: string): string => {
  const given = process.argv.find(a => a.startsWith(`--${name}=`))
  return given === undefined ? fallback : given.slice(name.length + 3)
}
const memoryEvents = Number(argument('events', '50000'))
const redisEvents = Number(argument('redis-events', '5000'))
const trials = Number(argument('trials', '5'))
const baseline = argument('baseline', '')
const inFlight = 64

interface Code {
  name: string
  plugin: any
  RedisEngine: any
}

async function load (name: string, root: string): Promise<Code> {
  const plugin = (await import(pathToFileURL(`${root}/plugin.ts`).href)).default
  const { RedisEngine } = await import(pathToFileURL(`${root}/lib/engines/redis/index.ts`).href)
  return { name, plugin, RedisEngine }
}

async function redisCpuSeconds (admin: Redis): Promise<number> {
  const info = await admin.info('cpu')
  let seconds = 0
  for (const match of info.matchAll(/^used_cpu_(?:user|sys):([\d.]+)$/gm)) seconds += Number(match[1])
  return seconds
}

interface Sample { perSecond: number, cpuMicros: number }

/** Publishes `events` through the plugin, `inFlight` at a time, on 100 channels; a key each when `keyed`. */
async function measure (app: FastifyInstance, events: number, keyed: boolean, run: number, admin: Redis | undefined): Promise<Sample> {
  const keys = keyed ? Array.from({ length: events }, (_, n) => `run${run}-key-${n}`) : []
  const payloads = Array.from({ length: events }, (_, n) => ({ n, text: 'hello' }))
  const redisBefore = admin === undefined ? 0 : await redisCpuSeconds(admin)
  const cpuBefore = process.cpuUsage()
  const started = process.hrtime.bigint()
  let next = 0
  await Promise.all(Array.from({ length: inFlight }, async () => {
    while (next < events) {
      const n = next++
      const options = keyed ? { idempotencyKey: keys[n] } : undefined
      await app.comet.publish(`channel-${n % 100}`, payloads[n], options)
    }
  }))
  const wallNs = Number(process.hrtime.bigint() - started)
  const cpu = process.cpuUsage(cpuBefore)
  const redisCpu = admin === undefined ? 0 : await redisCpuSeconds(admin) - redisBefore
  return { perSecond: events / (wallNs / 1e9), cpuMicros: (cpu.user + cpu.system + redisCpu * 1e6) / events }
}

function summary (samples: Sample[]): { median: Sample, spread: string } {
  const sorted = (key: keyof Sample): number[] => samples.map(s => s[key]).sort((a, b) => a - b)
  const median = (values: number[]): number => values[Math.floor(values.length / 2)] as number
  const rate = sorted('perSecond')
  const cpu = sorted('cpuMicros')
  return {
    median: { perSecond: median(rate), cpuMicros: median(cpu) },
    spread: `${Math.round(rate[0] as number)}–${Math.round(rate[rate.length - 1] as number)}/s, ${(cpu[0] as number).toFixed(1)}–${(cpu[cpu.length - 1] as number).toFixed(1)} µs`
  }
}

const codes = [await load('this branch', new URL('..', import.meta.url).pathname.replace(/\/$/, ''))]
if (baseline !== '') codes.push(await load('baseline', baseline))

const port = await freePort()
const server = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'inherit'] })
try {
  await new Promise<void>(resolve => server.stdout.on('data', (chunk: Buffer) => { if (chunk.toString().includes('Ready to accept')) resolve() }))
  const url = `redis://127.0.0.1:${port}`
  const admin = new Redis(url)
  const rows: Array<Record<string, string>> = []
  for (const engineName of ['memory', 'redis'] as const) {
    const events = engineName === 'memory' ? memoryEvents : redisEvents
    // The variants: this branch without and with a key, and the baseline without.
    const variants = [
      { code: codes[0] as Code, keyed: false },
      { code: codes[0] as Code, keyed: true },
      ...(codes[1] === undefined ? [] : [{ code: codes[1], keyed: false }])
    ]
    const samples = variants.map(() => [] as Sample[])
    let run = 0
    // One warm-up round, not counted, then the trials, the order of the variants rotating.
    for (let trial = -1; trial < trials; trial++) {
      for (let v = 0; v < variants.length; v++) {
        const index = (v + Math.max(trial, 0)) % variants.length
        const { code, keyed } = variants[index] as typeof variants[number]
        const app = Fastify()
        const engine = engineName === 'redis' ? new code.RedisEngine({ redis: url, keyPrefix: `cost${run}:`, historySize: 100 }) : undefined
        await app.register(code.plugin, engine === undefined ? {} : { engine })
        await app.ready()
        const sample = await measure(app, events, keyed, run++, engineName === 'redis' ? admin : undefined)
        await app.close()
        await engine?.close()
        await admin.flushall()
        if (trial >= 0) samples[index]?.push(sample)
      }
    }
    const without = summary(samples[0] as Sample[])
    for (const [v, { code, keyed }] of variants.entries()) {
      const { median, spread } = summary(samples[v] as Sample[])
      rows.push({
        engine: engineName,
        code: code.name,
        key: keyed ? 'a fresh key' : 'none',
        'publishes/s (median)': Math.round(median.perSecond).toString(),
        'CPU µs/publish (median)': median.cpuMicros.toFixed(1),
        [`spread of ${trials} trials`]: spread,
        'CPU vs this branch without a key': (median.cpuMicros / without.median.cpuMicros).toFixed(2)
      })
    }
  }
  console.table(rows)
  admin.disconnect()
} finally {
  server.kill()
}
