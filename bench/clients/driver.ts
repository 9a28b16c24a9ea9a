// The driver: one process that plays every subscriber and publisher of one scenario against one
// contender's server, and prints its measurements as one JSON line. bench/run.ts starts it; it
// reads its settings from its first argument (JSON, see DriverSettings).
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { Agent, request } from 'undici'
import type { ServerStats } from '../servers/common.js'
import { Http } from './http.js'
import { protocols } from './protocols.js'

export interface DriverSettings {
  contender: string
  /** restart: throughput with the contender's Redis restarted, its data lost, partway through. */
  scenario: 'fanout' | 'throughput' | 'restart'
  /** The contender's servers, http://host:port: one per process. Subscribers are spread over them. */
  origins: string[]
  /** Each process's control server, in the same order; publishes go to the first. */
  controls: string[]
  /** The harness's control of the contender's redis-server (counters, restart), for contenders on Redis. */
  redis?: string
  /** Where the driver's connections start from: one of 127.0.0.0/8, so a run's sockets do not share ephemeral ports with the last. */
  localAddress: string
  subscribers: number
  /** fanout: rounds measured, after warmupRounds not measured. */
  rounds: number
  warmupRounds: number
  /** fanout: how long everyone waits with nothing published, for the idle CPU. */
  idleMs: number
  /** throughput: subscribers per channel, so channels = subscribers / perChannel. */
  perChannel: number
  /** throughput: the deliveries per second aimed at (publishes per second × perChannel). */
  deliveriesPerSecond: number
  /** throughput: how long publishers publish. */
  publishMs: number
  publishers: number
  /** Longest wait for one round, for the subscribers to be parked, or for the last deliveries. */
  stepTimeoutMs: number
  /** restart: how long Redis stays down. */
  redisDownMs: number
}

/** What the harness reports of a contender's redis-server, summed over its restarts. */
export interface RedisUse { cpuUs: number, commands: number, byCommand: Record<string, number> }

export interface Memory { rss: number, heapUsed: number }

export interface FanoutResult {
  scenario: 'fanout'
  subscribers: number
  /** Before any subscriber connected, and while all wait; after two full GCs. */
  memoryBefore: Memory
  memoryHolding: Memory
  idleCpuMs: number
  idleMs: number
  rounds: number
  /** Publish sent → the last subscriber has it, one per completed round. */
  fanoutMs: number[]
  /** Per-delivery latencies of the measured rounds, sorted (ms). */
  latencyP50Ms: number
  latencyP99Ms: number
  deliveries: number
  /** Server CPU (user + system) during the measured rounds, in microseconds, summed over the contender's processes. */
  serverCpuUs: number
  /** Bytes the servers allocated on their V8 heaps during the measured rounds, summed over the contender's processes. */
  serverAllocatedBytes: number
  /** redis-server's CPU and commands during the measured rounds (0 without Redis). */
  redisCpuUs: number
  redisCommands: number
  redisByCommand: Record<string, number>
  clientCpuUs: number
  lost: number
  duplicated: number
  errors: number
  firstError?: string
}

export interface ThroughputResult {
  scenario: 'throughput' | 'restart'
  subscribers: number
  channels: number
  published: number
  /** Publishes refused (while Redis was down): not counted as lost if never delivered. */
  publishFailures: number
  /** Deliveries expected (published × subscribers per channel) and distinct deliveries received. */
  expected: number
  delivered: number
  /** Events a subscriber never got with no gap reported to it: silent loss. */
  lost: number
  duplicated: number
  /** Gaps reported to subscribers, and the events they covered (missed, but not silently). */
  gaps: number
  lostWithGap: number
  /** Polls refused with 503 (Redis down) and tried again. */
  retried: number
  /** From the first publish to the last delivery. */
  elapsedMs: number
  latencyP50Ms: number
  latencyP99Ms: number
  serverCpuUs: number
  /** Bytes the servers allocated on their V8 heaps from the first publish to the last delivery. */
  serverAllocatedBytes: number
  redisCpuUs: number
  redisCommands: number
  redisByCommand: Record<string, number>
  clientCpuUs: number
  errors: number
  firstError?: string
}

const settings = JSON.parse(process.argv[2] ?? '') as DriverSettings
const subscribe = protocols[settings.contender] ?? unknownContender()

function unknownContender (): never {
  throw new Error(`unknown contender ${settings.contender}`)
}

const now = (): number => performance.timeOrigin + performance.now()
const controlAgent = new Agent({ connections: 8, keepAliveTimeout: 600_000, keepAliveMaxTimeout: 600_000, headersTimeout: 0, bodyTimeout: 0 })

async function control<T> (path: string, method: 'GET' | 'POST' = 'GET', base = settings.controls[0] as string): Promise<T> {
  const response = await request(`${base}${path}`, { dispatcher: controlAgent, method, signal: AbortSignal.timeout(settings.stepTimeoutMs) })
  const text = await response.body.text()
  if (response.statusCode !== 200) throw new Error(`control ${path}: ${response.statusCode} ${text}`)
  return JSON.parse(text) as T
}

const processes = settings.origins.length
/** The counters of every process of the contender, summed, and of its redis-server. */
interface Stats { cpu: number, allocated: number, memory: Memory, redis: RedisUse }
async function stats (gc = false): Promise<Stats> {
  const [each, redis] = await Promise.all([
    Promise.all(settings.controls.map(base => control<ServerStats>(gc ? '/stats?gc=1' : '/stats', 'GET', base))),
    settings.redis === undefined ? { cpuUs: 0, commands: 0, byCommand: {} } : control<RedisUse>('', 'GET', settings.redis)
  ])
  return {
    cpu: each.reduce((sum, s) => sum + s.cpu.user + s.cpu.system, 0),
    allocated: each.reduce((sum, s) => sum + s.allocatedBytes, 0),
    memory: { rss: each.reduce((sum, s) => sum + s.memory.rss, 0), heapUsed: each.reduce((sum, s) => sum + s.memory.heapUsed, 0) },
    redis
  }
}
const cpuOf = (s: Stats): number => s.cpu
const clientCpu = (): number => { const { user, system } = process.cpuUsage(); return user + system }
const memoryOf = (s: Stats): Memory => s.memory
function redisSince (before: Stats, after: Stats): { redisCpuUs: number, redisCommands: number, redisByCommand: Record<string, number> } {
  const redisByCommand: Record<string, number> = {}
  for (const [name, calls] of Object.entries(after.redis.byCommand)) {
    const delta = calls - (before.redis.byCommand[name] ?? 0)
    if (delta > 0) redisByCommand[name] = delta
  }
  return { redisCpuUs: after.redis.cpuUs - before.redis.cpuUs, redisCommands: after.redis.commands - before.redis.commands, redisByCommand }
}

/** Which process subscriber i talks to: the subscribers of each channel are spread over all of them. */
const processOf = (i: number, channels: number): number => Math.floor(i / channels) % processes

/** Resolves when every subscriber's long-poll is open on its server. */
async function parked (channels = 1): Promise<void> {
  const expected = new Array<number>(processes).fill(0)
  for (let i = 0; i < settings.subscribers; i++) (expected[processOf(i, channels)] as number)++
  await Promise.all(settings.controls.map((base, p) => control(`/open?atLeast=${expected[p] as number}`, 'GET', base)))
  // Open is not always parked yet (a POST body may still be on its way): a moment more.
  await sleep(10)
}

function publish (channel: string, seq: number, t: number): Promise<unknown> {
  return control(`/publish?ch=${channel}&seq=${seq}&t=${t}`, 'POST')
}

let errors = 0
let retried = 0
let firstError: string | undefined
function onError (error: unknown): void {
  errors++
  firstError ??= error instanceof Error ? error.message : String(error)
}

/** Numbers whose publish was refused (Redis down): never delivered is not lost for them. */
const noFailures: ReadonlySet<number> = new Set()

/**
 * Each subscriber's newest sequence number, and the losses and repeats it saw. Events missed after
 * a gap was reported to it are counted apart: the subscriber was told.
 */
class Tally {
  last = 0
  lost = 0
  lostWithGap = 0
  duplicated = 0
  distinct = 0
  gaps = 0
  #gapReported = false
  gap (): void {
    this.gaps++
    this.#gapReported = true
  }

  see (seq: number, failed = noFailures): boolean {
    if (seq <= this.last) {
      this.duplicated++
      return false
    }
    this.#missed(this.last, seq, failed)
    this.last = seq
    this.distinct++
    return true
  }

  /** At the end: the events published after the last one seen. */
  end (published: number, failed = noFailures): void {
    this.#missed(this.last, published + 1, failed)
  }

  #missed (after: number, before: number, failed: ReadonlySet<number>): void {
    let missed = 0
    for (let seq = after + 1; seq < before; seq++) if (!failed.has(seq)) missed++
    if (this.#gapReported) this.lostWithGap += missed
    else this.lost += missed
    this.#gapReported = false
  }
}

/** Starts the subscribers, at most 256 setting up at once. */
async function startSubscribers (channels: number, channelOf: (i: number) => string, onMessage: (i: number, seq: number, t: number) => void, onGap: (i: number) => void = () => {}): Promise<void> {
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < settings.subscribers) {
      const i = next++
      const origin = settings.origins[processOf(i, channels)] as string
      await subscribe(new Http(origin, settings.localAddress), channelOf(i), (seq, t) => onMessage(i, seq, t), onError, {
        onGap: () => onGap(i),
        onRetry: () => { retried++ }
      }).catch(onError)
    }
  }
  await Promise.all(Array.from({ length: Math.min(256, settings.subscribers) }, worker))
  if (errors > 0) throw new Error(`${errors} subscribers failed to start: ${firstError}`)
}

function percentile (sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] as number
}

/** Calls `condition` every few milliseconds until it holds or the step times out; says which. */
async function until (condition: () => boolean): Promise<boolean> {
  const deadline = Date.now() + settings.stepTimeoutMs
  while (!condition()) {
    if (Date.now() > deadline) return false
    await sleep(2)
  }
  return true
}

async function fanout (): Promise<FanoutResult> {
  const { subscribers, rounds, warmupRounds } = settings
  const tallies = Array.from({ length: subscribers }, () => new Tally())
  const latencies = new Float64Array(rounds * subscribers)
  let latencyCount = 0
  let measuring = false
  let receivedThisRound = 0
  let lastReceived = 0

  const memoryBefore = memoryOf(await stats(true))
  await startSubscribers(1, () => 'fan', (i, seq, t) => {
    if (!(tallies[i] as Tally).see(seq)) return
    const at = now()
    receivedThisRound++
    lastReceived = at
    if (measuring && latencyCount < latencies.length) latencies[latencyCount++] = at - t
  })
  await parked()
  const memoryHolding = memoryOf(await stats(true))

  // Let the collections and compilations of the set-up finish before nothing should happen.
  await sleep(500)
  // With Redis, its CPU while nothing happens is part of the cost.
  const busy = (s: Stats): number => cpuOf(s) + s.redis.cpuUs
  const idleStart = busy(await stats())
  await sleep(settings.idleMs)
  const idleCpuMs = (busy(await stats()) - idleStart) / 1000

  const fanoutMs: number[] = []
  let serverStart: Stats | undefined
  let clientStart = 0
  for (let round = 1; round <= warmupRounds + rounds; round++) {
    if (round === warmupRounds + 1) {
      measuring = true
      serverStart = await stats()
      clientStart = clientCpu()
    }
    receivedThisRound = 0
    const t = now()
    await publish('fan', round, t)
    if (!await until(() => receivedThisRound >= subscribers)) {
      onError(new Error(`round ${round}: ${receivedThisRound} of ${subscribers} received in time`))
      break
    }
    if (measuring) fanoutMs.push(lastReceived - t)
    await parked()
  }
  const serverEnd = await stats()
  serverStart ??= serverEnd
  const serverCpuUs = cpuOf(serverEnd) - cpuOf(serverStart)
  const serverAllocatedBytes = serverEnd.allocated - serverStart.allocated
  const clientCpuUs = clientCpu() - clientStart
  const sorted = latencies.slice(0, latencyCount).sort()
  let lost = 0
  let duplicated = 0
  const published = warmupRounds + rounds
  for (const tally of tallies) {
    tally.end(published)
    lost += tally.lost + tally.lostWithGap
    duplicated += tally.duplicated
  }
  return {
    scenario: 'fanout',
    subscribers,
    memoryBefore,
    memoryHolding,
    idleCpuMs,
    idleMs: settings.idleMs,
    rounds: fanoutMs.length,
    fanoutMs,
    latencyP50Ms: percentile(sorted, 0.5),
    latencyP99Ms: percentile(sorted, 0.99),
    deliveries: fanoutMs.length * subscribers,
    serverCpuUs,
    serverAllocatedBytes,
    ...redisSince(serverStart, serverEnd),
    clientCpuUs,
    lost,
    duplicated,
    errors,
    ...(firstError === undefined ? {} : { firstError })
  }
}

async function throughput (): Promise<ThroughputResult> {
  const { subscribers, perChannel, publishers } = settings
  const channels = Math.max(1, Math.ceil(subscribers / perChannel))
  const channelOf = (i: number): number => i % channels
  const tallies = Array.from({ length: subscribers }, () => new Tally())
  const published = new Array<number>(channels).fill(0)
  // Per channel, the numbers whose publish was refused: the event may or may not exist.
  const failed = Array.from({ length: channels }, () => new Set<number>())
  let publishFailures = 0
  const latencies: number[] = []
  let delivered = 0
  let lastReceived = 0

  await startSubscribers(channels, i => `c${channelOf(i)}`, (i, seq, t) => {
    if (!(tallies[i] as Tally).see(seq, failed[channelOf(i)])) return
    lastReceived = now()
    delivered++
    latencies.push(lastReceived - t)
  }, i => { (tallies[i] as Tally).gap() })
  await parked(channels)

  const serverStart = await stats()
  const clientStart = clientCpu()
  const started = now()
  const publishesPerSecond = settings.deliveriesPerSecond / perChannel
  const intervalMs = 1000 * publishers / publishesPerSecond
  const publisher = async (p: number): Promise<void> => {
    const own = Array.from({ length: Math.ceil((channels - p) / publishers) }, (_, k) => p + k * publishers)
    if (own.length === 0) return
    for (let k = 0; ; k++) {
      const due = started + k * intervalMs
      if (due - started >= settings.publishMs) return
      const wait = due - now()
      if (wait > 1) await sleep(wait)
      const channel = own[k % own.length] as number
      const seq = ++(published[channel] as number)
      try {
        await publish(`c${channel}`, seq, now())
      } catch (error) {
        if (settings.scenario !== 'restart') throw error
        // Refused while Redis is down: the next publish takes the next number, as an application's would.
        ;(failed[channel] as Set<number>).add(seq)
        publishFailures++
      }
    }
  }
  // Redis goes down a third of the way in, for redisDownMs, and comes back empty.
  const restart = settings.scenario === 'restart' && settings.redis !== undefined
    ? sleep(settings.publishMs / 3).then(() => control(`/restart?downMs=${settings.redisDownMs}`, 'POST', settings.redis))
    : Promise.resolve()
  await Promise.all([restart, ...Array.from({ length: publishers }, (_, p) => publisher(p))])
  let expected = 0
  for (let i = 0; i < subscribers; i++) expected += (published[channelOf(i)] as number) - (failed[channelOf(i)] as Set<number>).size
  // The last deliveries: until all are in, or none came for a while (lost ones never come).
  let seen = -1
  let quietSince = now()
  await until(() => {
    if (delivered !== seen) {
      seen = delivered
      quietSince = now()
    }
    // Across a restart, polls woken by the engine's healing after a reconnection may come late:
    // wait longer before calling what has not come lost.
    return delivered >= expected || now() - quietSince > (settings.scenario === 'restart' ? 3000 : 500)
  })
  const serverEnd = await stats()
  const serverCpuUs = cpuOf(serverEnd) - cpuOf(serverStart)
  const serverAllocatedBytes = serverEnd.allocated - serverStart.allocated
  const clientCpuUs = clientCpu() - clientStart
  let lost = 0
  let lostWithGap = 0
  let gaps = 0
  let duplicated = 0
  for (let i = 0; i < subscribers; i++) {
    const tally = tallies[i] as Tally
    tally.end(published[channelOf(i)] as number, failed[channelOf(i)])
    lost += tally.lost
    lostWithGap += tally.lostWithGap
    gaps += tally.gaps
    duplicated += tally.duplicated
  }
  const sorted = Float64Array.from(latencies).sort()
  return {
    scenario: settings.scenario === 'restart' ? 'restart' : 'throughput',
    subscribers,
    channels,
    published: published.reduce((a, b) => a + b, 0) - publishFailures,
    publishFailures,
    expected,
    delivered,
    lost,
    duplicated,
    gaps,
    lostWithGap,
    retried,
    elapsedMs: lastReceived - started,
    latencyP50Ms: percentile(sorted, 0.5),
    latencyP99Ms: percentile(sorted, 0.99),
    serverCpuUs,
    serverAllocatedBytes,
    ...redisSince(serverStart, serverEnd),
    clientCpuUs,
    errors,
    ...(firstError === undefined ? {} : { firstError })
  }
}

const result = settings.scenario === 'fanout' ? await fanout() : await throughput()
process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(0))
