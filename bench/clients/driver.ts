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
  scenario: 'fanout' | 'throughput'
  /** The contender's server, http://host:port. */
  origin: string
  /** The same process's control server. */
  control: string
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
}

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
  /** Server CPU (user + system) during the measured rounds, in microseconds. */
  serverCpuUs: number
  clientCpuUs: number
  lost: number
  duplicated: number
  errors: number
  firstError?: string
}

export interface ThroughputResult {
  scenario: 'throughput'
  subscribers: number
  channels: number
  published: number
  /** Deliveries expected (published × subscribers per channel) and distinct deliveries received. */
  expected: number
  delivered: number
  lost: number
  duplicated: number
  /** From the first publish to the last delivery. */
  elapsedMs: number
  latencyP50Ms: number
  latencyP99Ms: number
  serverCpuUs: number
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

async function control<T> (path: string, method: 'GET' | 'POST' = 'GET'): Promise<T> {
  const response = await request(`${settings.control}${path}`, { dispatcher: controlAgent, method, signal: AbortSignal.timeout(settings.stepTimeoutMs) })
  const text = await response.body.text()
  if (response.statusCode !== 200) throw new Error(`control ${path}: ${response.statusCode} ${text}`)
  return JSON.parse(text) as T
}

const stats = (gc = false): Promise<ServerStats> => control<ServerStats>(gc ? '/stats?gc=1' : '/stats')
const cpuOf = (s: ServerStats): number => s.cpu.user + s.cpu.system
const clientCpu = (): number => { const { user, system } = process.cpuUsage(); return user + system }
const memoryOf = (s: ServerStats): Memory => ({ rss: s.memory.rss, heapUsed: s.memory.heapUsed })

/** Resolves when every subscriber's long-poll is open on the server. */
async function parked (): Promise<void> {
  await control(`/open?atLeast=${settings.subscribers}`)
  // Open is not always parked yet (a POST body may still be on its way): a moment more.
  await sleep(10)
}

function publish (channel: string, seq: number, t: number): Promise<unknown> {
  return control(`/publish?ch=${channel}&seq=${seq}&t=${t}`, 'POST')
}

let errors = 0
let firstError: string | undefined
function onError (error: unknown): void {
  errors++
  firstError ??= error instanceof Error ? error.message : String(error)
}

/** Each subscriber's newest sequence number, and the gaps and repeats it saw. */
class Tally {
  last = 0
  lost = 0
  duplicated = 0
  distinct = 0
  see (seq: number): boolean {
    if (seq <= this.last) {
      this.duplicated++
      return false
    }
    this.lost += seq - this.last - 1
    this.last = seq
    this.distinct++
    return true
  }
}

/** Starts the subscribers, at most 256 setting up at once. */
async function startSubscribers (channelOf: (i: number) => string, onMessage: (i: number, seq: number, t: number) => void): Promise<void> {
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < settings.subscribers) {
      const i = next++
      await subscribe(new Http(settings.origin, settings.localAddress), channelOf(i), (seq, t) => onMessage(i, seq, t), onError).catch(onError)
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
  await startSubscribers(() => 'fan', (i, seq, t) => {
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
  const idleStart = cpuOf(await stats())
  await sleep(settings.idleMs)
  const idleCpuMs = (cpuOf(await stats()) - idleStart) / 1000

  const fanoutMs: number[] = []
  let serverStart = 0
  let clientStart = 0
  for (let round = 1; round <= warmupRounds + rounds; round++) {
    if (round === warmupRounds + 1) {
      measuring = true
      serverStart = cpuOf(await stats())
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
  const serverCpuUs = cpuOf(await stats()) - serverStart
  const clientCpuUs = clientCpu() - clientStart
  const sorted = latencies.slice(0, latencyCount).sort()
  let lost = 0
  let duplicated = 0
  const published = warmupRounds + rounds
  for (const tally of tallies) {
    lost += tally.lost + (published - tally.last)
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
  const latencies: number[] = []
  let delivered = 0
  let lastReceived = 0

  await startSubscribers(i => `c${channelOf(i)}`, (i, seq, t) => {
    if (!(tallies[i] as Tally).see(seq)) return
    lastReceived = now()
    delivered++
    latencies.push(lastReceived - t)
  })
  await parked()

  const serverStart = cpuOf(await stats())
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
      await publish(`c${channel}`, seq, now())
    }
  }
  await Promise.all(Array.from({ length: publishers }, (_, p) => publisher(p)))
  let expected = 0
  for (let i = 0; i < subscribers; i++) expected += published[channelOf(i)] as number
  // The last deliveries: until all are in, or none came for a while (lost ones never come).
  let seen = -1
  let quietSince = now()
  await until(() => {
    if (delivered !== seen) {
      seen = delivered
      quietSince = now()
    }
    return delivered >= expected || now() - quietSince > 500
  })
  const serverCpuUs = cpuOf(await stats()) - serverStart
  const clientCpuUs = clientCpu() - clientStart
  let lost = 0
  let duplicated = 0
  for (let i = 0; i < subscribers; i++) {
    const tally = tallies[i] as Tally
    lost += tally.lost + ((published[channelOf(i)] as number) - tally.last)
    duplicated += tally.duplicated
  }
  const sorted = Float64Array.from(latencies).sort()
  return {
    scenario: 'throughput',
    subscribers,
    channels,
    published: published.reduce((a, b) => a + b, 0),
    expected,
    delivered,
    lost,
    duplicated,
    elapsedMs: lastReceived - started,
    latencyP50Ms: percentile(sorted, 0.5),
    latencyP99Ms: percentile(sorted, 0.99),
    serverCpuUs,
    clientCpuUs,
    errors,
    ...(firstError === undefined ? {} : { firstError })
  }
}

const result = settings.scenario === 'fanout' ? await fanout() : await throughput()
process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(0))
