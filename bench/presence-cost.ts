// What presence costs per poll: the server's CPU per delivered event and, on Redis, Redis commands
// per second, with presence off and on, trials interleaved in one run.
//   node --import=tsx bench/presence-cost.ts [subscribers] [events] [trials]
// REDIS=1 runs the servers on a private redis-server (started here, on a free port). Each trial
// starts a fresh server process (bench/servers/presence-cost-server.ts), holds `subscribers`
// long-polls on one channel, each as a member of its own, publishes `events` one at a time (each
// delivered to every subscriber before the next), and reads the server's CPU before and after.
import { spawn, type ChildProcess } from 'node:child_process'
import { Redis } from 'ioredis'
import { Agent, request } from 'undici'
import { freePort } from './redis-server.js'

const subscribers = Number(process.argv[2] ?? 500)
const events = Number(process.argv[3] ?? 50)
const trials = Number(process.argv[4] ?? 3)
const onRedis = process.env.REDIS === '1'

async function startRedis (): Promise<{ url: string, admin: Redis, stop: () => void }> {
  const port = await freePort()
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'inherit'] })
  let output = ''
  await new Promise<void>(resolve => child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString(); if (output.includes('Ready to accept')) resolve() }))
  child.stdout.resume()
  const url = `redis://127.0.0.1:${port}`
  return { url, admin: new Redis(url), stop: () => child.kill('SIGKILL') }
}

async function startServer (presence: boolean, redisUrl: string | undefined): Promise<{ origin: string, child: ChildProcess }> {
  const child = spawn(process.execPath, ['--import=tsx', 'bench/servers/presence-cost-server.ts'], {
    env: { ...process.env, PRESENCE: presence ? '1' : '0', ...(redisUrl === undefined ? {} : { REDIS_URL: redisUrl }) },
    stdio: ['ignore', 'pipe', 'inherit']
  })
  let output = ''
  const port = await new Promise<string>(resolve => child.stdout?.on('data', (chunk: Buffer) => {
    output += chunk.toString()
    const found = /listening (\d+)/.exec(output)
    if (found !== null) resolve(found[1] as string)
  }))
  return { origin: `http://127.0.0.1:${port}`, child }
}

async function cpuMicros (dispatcher: Agent, origin: string): Promise<number> {
  const { body } = await request(`${origin}/cpu`, { dispatcher })
  const { user, system } = await body.json() as { user: number, system: number }
  return user + system
}

async function trial (presence: boolean, redis: { url: string, admin: Redis } | undefined): Promise<{ cpuPerEvent: number, redisPerSecond: number | undefined }> {
  const { origin, child } = await startServer(presence, redis?.url)
  const dispatcher = new Agent({ connections: subscribers + 8, pipelining: 0 })
  let delivered = 0
  let stop = false
  const cursors = new Array<string>(subscribers).fill('0')
  const loops = Array.from({ length: subscribers }, async (_, i) => {
    while (!stop) {
      const { body } = await request(`${origin}/comet/subscribe?subscribed[room]=${cursors[i] as string}`, { dispatcher, headers: { 'x-user': `user-${i}` } })
      const reply = await body.json() as { m?: { room?: unknown[] }, p: { room: string } }
      delivered += reply.m?.room?.length ?? 0
      cursors[i] = reply.p.room
    }
  })
  // Every subscriber has a poll waiting (and, with presence, is a member) before the measure.
  while (true) {
    const { body } = await request(`${origin}/stats`, { dispatcher })
    if ((await body.json() as { pending: number }).pending === subscribers) break
    await new Promise(resolve => setTimeout(resolve, 20))
  }
  const before = await cpuMicros(dispatcher, origin)
  const target = subscribers * events
  for (let n = 0; n < events; n++) {
    await request(`${origin}/comet/publish/room`, { method: 'POST', dispatcher, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ n }) }).then(r => r.body.dump())
    while (delivered < subscribers * (n + 1)) await new Promise(resolve => setImmediate(resolve))
    // The polls come back before the next publish: each event is a full fan-out to waiting polls.
    // (Asked every 10 ms: idle waiting costs the server nothing, asking does.)
    while (true) {
      await new Promise(resolve => setTimeout(resolve, 10))
      const { body } = await request(`${origin}/stats`, { dispatcher })
      if ((await body.json() as { pending: number }).pending === subscribers) break
    }
  }
  const cpu = await cpuMicros(dispatcher, origin) - before
  let redisPerSecond: number | undefined
  if (redis !== undefined) {
    // Idle: every member waits in a poll; what Redis gets per second is presence's refreshes.
    await redis.admin.config('RESETSTAT')
    const seconds = 3
    await new Promise(resolve => setTimeout(resolve, seconds * 1000))
    const stats = await redis.admin.info('commandstats')
    let calls = 0
    for (const line of stats.split('\r\n')) {
      const found = /^cmdstat_(evalsha|eval):calls=(\d+)/.exec(line)
      if (found !== null) calls += Number(found[2])
    }
    redisPerSecond = calls / seconds
  }
  stop = true
  child.kill('SIGKILL')
  await Promise.allSettled(loops)
  await dispatcher.destroy()
  if (delivered < target) throw new Error(`delivered ${delivered} of ${target}`)
  return { cpuPerEvent: cpu / target, redisPerSecond }
}

const redis = onRedis ? await startRedis() : undefined
const results: Record<'off' | 'on', Array<{ cpuPerEvent: number, redisPerSecond: number | undefined }>> = { off: [], on: [] }
for (let i = 0; i < trials; i++) {
  for (const mode of (i % 2 === 0 ? ['off', 'on'] : ['on', 'off']) as Array<'off' | 'on'>) {
    await redis?.admin.flushall()
    results[mode].push(await trial(mode === 'on', redis))
  }
}
const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] as number
for (const mode of ['off', 'on'] as const) {
  const cpu = results[mode].map(r => r.cpuPerEvent)
  const redisCalls = results[mode].map(r => r.redisPerSecond).filter((n): n is number => n !== undefined)
  console.log(`presence ${mode}: server CPU µs per delivered event, median ${median(cpu).toFixed(2)} (trials ${cpu.map(n => n.toFixed(2)).join(', ')})` +
    (redisCalls.length > 0 ? `; idle Redis scripts per second ${redisCalls.map(n => n.toFixed(1)).join(', ')}` : ''))
}
console.log(`ratio on/off: ${(median(results.on.map(r => r.cpuPerEvent)) / median(results.off.map(r => r.cpuPerEvent))).toFixed(3)} (${subscribers} subscribers, ${events} events, ${trials} trials, ${onRedis ? 'Redis' : 'memory'} engine)`)
redis?.admin.disconnect()
redis?.stop()
