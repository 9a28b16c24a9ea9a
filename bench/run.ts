// Benchmarks of fastify-comet side by side with the floor and its peers: `npm run bench`.
//
// What runs: each contender's server is a process of its own (bench/servers/<name>.ts), and one
// driver process (bench/clients/driver.ts) plays all subscribers and publishers, speaking each
// contender's native protocol over a minimal HTTP/1.1 client (bench/clients/http.ts). Contenders:
//   floor          a bare node:http server that parks polls in memory and answers them on publish;
//   fastify-floor  not a contender but a reference: the floor's design as a plain Fastify route, so
//                  what Fastify itself costs, the bound of a plugin that runs inside it;
//   protocol-floor also a reference: a bare Fastify route speaking exactly fastify-comet's subscribe
//                  protocol (same checks, reply shape and headers), keeping only each channel's
//                  latest event: the bound of fastify-comet for this protocol, its targets' unit;
//   fastify-comet  this plugin, in-memory engine, in Fastify without a logger;
//   fastify-comet-metrics  the same with its metrics in use: the Prometheus helper scraped every
//                  second and a subscriber on each diagnostics channel (to compare with the above);
//   file-polling   the design it replaces: a publish writes a file, each waiting request checks its
//                  modification time every 10 ms;
//   faye           Faye's Node.js adapter (Bayeux), clients restricted to long-polling;
//   socket.io      socket.io restricted to its HTTP long-polling transport;
//   sse-floor      the streaming floor: a bare node:http server holding each subscriber's response
//                  open as Server-Sent Events and writing one frame to each on publish;
//   fastify-comet-sse  this plugin streaming (Accept: text/event-stream), in-memory engine;
//   socket.io-ws   socket.io over its WebSocket transport only (what its users get once upgraded);
// and on Redis (the harness starts a redis-server of its own on a free port for each run):
//   fastify-comet-redis      this plugin on its Redis engine, one process;
//   fastify-comet-redis-x2   the same, two processes on one Redis: subscribers spread over both,
//                            publishes made on the first, so most deliveries cross Redis;
//   socket.io-redis(-x2)     socket.io on @socket.io/redis-adapter, polling only, one and two processes;
//   fastify-comet-redis-sse  this plugin streaming on its Redis engine, one process.
// Every scenario runs against a fresh server process, at each size (number of subscribers):
//   fanout      every subscriber waits on one channel; one message is published at a time, and the
//               next only once every subscriber has it and waits again. Fan-out time: publish sent
//               → the last subscriber has it (median of the rounds), and per-delivery latency. Also
//               the costs: server memory per waiting subscriber (RSS and heap after two full GCs,
//               before any subscriber vs while all wait), server CPU while all wait and nothing is
//               published, and server CPU and bytes allocated per delivered event over the rounds;
//   throughput  subscribers spread over channels (perChannel on each), publishers publishing at a
//               steady rate on all channels while subscribers poll again after each reply:
//               deliveries per second, events lost, server CPU and bytes allocated per delivered
//               event;
//   restart     (contenders on Redis only) throughput, with redis-server killed a third of the way
//               in and started again empty: events missed by a subscriber that was told of a gap
//               are counted apart from events lost silently, which must be none.
// For contenders on Redis, CPU is summed over the Node.js processes and redis-server (INFO cpu),
// and Redis commands per published event come from INFO commandstats.
// CPU and memory come from the server process's own counters (process.cpuUsage(),
// process.memoryUsage()), read through a control server on a port of its own; so do the bytes it
// allocated on its V8 heap (v8.GCProfiler: what each GC freed, plus what the heap holds more, see
// bench/servers/heap-allocations.ts), summed over a contender's processes, redis-server excluded.
// Every message carries a per-channel sequence number, so lost and repeated events are counted;
// and its send time, so latencies are measured on one clock. Absolute figures on a shared machine
// are noise: each figure is also given as a ratio to the floor's and to protocol-floor's, measured
// in the same run. The whole set is run `trials` times, contenders interleaved, and each figure is
// the median of its trials, so that a burst of load from elsewhere does not land on one contender
// only.
//
// Options: --quick (small sizes, short phases, one trial, one contender on Redis: the CI smoke test),
// --sizes=1000,5000,10000, --trials=2, --contenders=floor,fastify-comet,…,
// --scenarios=fanout,throughput,restart, --out=<file.json> (default bench/results/latest.json);
// --report=<file.json> prints the tables of an earlier run again, from its raw results.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { cpus, loadavg, totalmem } from 'node:os'
import { dirname, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { redisCounters, startRedisServer, type RedisServer } from './redis-server.js'
import type { DriverSettings, FanoutResult, RedisUse, ThroughputResult } from './clients/driver.js'

const root = fileURLToPath(new URL('..', import.meta.url))

/** A contender's server file (and its arguments), how many processes of it run, and whether they share a Redis. */
interface ContenderSpec { file: string, args?: string[], processes: number, redis: boolean }
const contenderSpecs: Record<string, ContenderSpec> = {
  floor: { file: 'floor.ts', processes: 1, redis: false },
  'fastify-floor': { file: 'fastify-floor.ts', processes: 1, redis: false },
  'protocol-floor': { file: 'protocol-floor.ts', processes: 1, redis: false },
  'fastify-comet': { file: 'comet.ts', processes: 1, redis: false },
  'fastify-comet-metrics': { file: 'comet-metrics.ts', processes: 1, redis: false },
  'file-polling': { file: 'file-polling.ts', processes: 1, redis: false },
  faye: { file: 'faye.ts', processes: 1, redis: false },
  'socket.io': { file: 'socket-io.ts', processes: 1, redis: false },
  'fastify-comet-redis': { file: 'comet.ts', processes: 1, redis: true },
  'fastify-comet-redis-x2': { file: 'comet.ts', processes: 2, redis: true },
  'socket.io-redis': { file: 'socket-io.ts', processes: 1, redis: true },
  'socket.io-redis-x2': { file: 'socket-io.ts', processes: 2, redis: true },
  'sse-floor': { file: 'sse-floor.ts', processes: 1, redis: false },
  'fastify-comet-sse': { file: 'comet.ts', processes: 1, redis: false },
  'fastify-comet-redis-sse': { file: 'comet.ts', processes: 1, redis: true },
  'socket.io-ws': { file: 'socket-io.ts', args: ['websocket'], processes: 1, redis: false }
}
const contenders = Object.keys(contenderSpecs)
// --quick keeps the smoke test short: of the contenders on Redis, the one the Redis engine is for.
const quickContenders = ['floor', 'fastify-floor', 'protocol-floor', 'fastify-comet', 'fastify-comet-metrics', 'file-polling', 'faye', 'socket.io', 'fastify-comet-redis-x2', 'sse-floor', 'fastify-comet-sse']
const scenarios = ['fanout', 'throughput', 'restart'] as const
const specOf = (contender: string): ContenderSpec => contenderSpecs[contender] as ContenderSpec

interface Settings {
  sizes: number[]
  contenders: string[]
  scenarios: string[]
  out: string
  report: string | undefined
  quick: boolean
  trials: number
  driver: Omit<DriverSettings, 'contender' | 'scenario' | 'origins' | 'controls' | 'redis' | 'localAddress' | 'subscribers'>
  /** Longest a driver process may run. */
  driverTimeoutMs: number
}

function parseArguments (argv: readonly string[]): Settings {
  const options = new Map<string, string>()
  for (const argument of argv) {
    const match = /^--([a-z]+)(?:=(.*))?$/.exec(argument)
    if (match === null) throw new Error(`unknown argument ${argument}; expected --quick, --sizes=, --trials=, --contenders=, --scenarios=, --out=, --report=`)
    options.set(match[1] as string, match[2] ?? '')
  }
  for (const name of options.keys()) {
    if (!['quick', 'sizes', 'trials', 'contenders', 'scenarios', 'out', 'report'].includes(name)) throw new Error(`unknown option --${name}`)
  }
  const quick = options.has('quick')
  const list = (name: string, fallback: readonly string[]): string[] => options.get(name)?.split(',').filter(Boolean) ?? [...fallback]
  const sizes = list('sizes', quick ? ['200'] : ['1000', '5000', '10000']).map(Number)
  if (sizes.some(size => !Number.isInteger(size) || size < 1)) throw new Error('--sizes takes positive integers, e.g. --sizes=1000,5000')
  const trials = Number(options.get('trials') ?? (quick ? 1 : 2))
  if (!Number.isInteger(trials) || trials < 1) throw new Error('--trials takes a positive integer')
  const chosen = list('contenders', quick ? quickContenders : contenders)
  for (const name of chosen) if (!(contenders as readonly string[]).includes(name)) throw new Error(`unknown contender ${name}; known: ${contenders.join(', ')}`)
  const chosenScenarios = list('scenarios', scenarios)
  for (const name of chosenScenarios) if (!(scenarios as readonly string[]).includes(name)) throw new Error(`unknown scenario ${name}; known: ${scenarios.join(', ')}`)
  return {
    sizes,
    contenders: chosen,
    scenarios: chosenScenarios,
    out: resolve(options.get('out') ?? resolve(root, 'bench/results/latest.json')),
    report: options.has('report') ? resolve(options.get('report') as string) : undefined,
    quick,
    trials,
    driver: quick
      ? { rounds: 5, warmupRounds: 2, idleMs: 500, perChannel: 10, deliveriesPerSecond: 1000, publishMs: 1500, publishers: 4, stepTimeoutMs: 15_000, redisDownMs: 300 }
      : { rounds: 15, warmupRounds: 3, idleMs: 2000, perChannel: 10, deliveriesPerSecond: 4000, publishMs: 4000, publishers: 4, stepTimeoutMs: 30_000, redisDownMs: 1000 },
    driverTimeoutMs: quick ? 60_000 : 300_000
  }
}

/** Runs a Node.js process with its open-file limit raised to the hard limit where the shell can. */
function spawnNode (args: readonly string[], env: Record<string, string> = {}): ChildProcess {
  // REDIS_URL is the harness's to give: a contender not on Redis must not find one in the shell's.
  const { REDIS_URL: _shells, ...inherited } = process.env
  return spawn('sh', ['-c', 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"', 'sh', process.execPath, ...args], {
    cwd: root,
    env: { ...inherited, ...env },
    stdio: ['ignore', 'pipe', 'inherit']
  })
}

function fileLimits (): { soft: number, hard: number } {
  const [soft, hard] = execFileSync('sh', ['-c', 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; echo "$(ulimit -n) $(ulimit -Hn)"'], { encoding: 'utf8' }).trim().split(' ')
  return { soft: Number(soft), hard: hard === 'unlimited' ? Infinity : Number(hard) }
}

/** The first line a child prints, parsed; rejects if it exits first or takes too long. */
function firstLine<T> (child: ChildProcess, timeoutMs: number, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    let output = ''
    const timer = setTimeout(() => fail(new Error(`${what}: no answer within ${timeoutMs} ms`)), timeoutMs)
    const fail = (error: Error): void => {
      clearTimeout(timer)
      reject(error)
    }
    child.stdout?.setEncoding('utf8')
    child.stdout?.on('data', (chunk: string) => {
      output += chunk
      const end = output.indexOf('\n')
      if (end === -1) return
      clearTimeout(timer)
      try {
        resolve(JSON.parse(output.slice(0, end)) as T)
      } catch {
        reject(new Error(`${what}: not JSON: ${output.slice(0, 500)}`))
      }
    })
    child.once('exit', code => fail(new Error(`${what} exited with ${String(code)}: ${output.slice(0, 500)}`)))
  })
}

async function stop (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise(resolve => child.once('exit', resolve))
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), 3000)
  await exited
  clearTimeout(timer)
}

let runIndex = 0

/**
 * The harness's side of a contender's redis-server: a small HTTP server the driver asks for the
 * counters (GET /: CPU and commands, summed over restarts) and for a restart (POST /restart).
 */
async function redisControl (redis: RedisServer): Promise<{ url: string, close: () => Promise<void> }> {
  // Counters start again at 0 when redis-server does: what earlier incarnations spent is kept here.
  const spent: RedisUse = { cpuUs: 0, commands: 0, byCommand: {} }
  const now = async (): Promise<RedisUse> => {
    const counters = await redisCounters(redis.port)
    const byCommand = { ...spent.byCommand }
    for (const [name, calls] of Object.entries(counters.byCommand)) byCommand[name] = (byCommand[name] ?? 0) + calls
    return { cpuUs: spent.cpuUs + counters.cpuUs, commands: spent.commands + counters.commands, byCommand }
  }
  const server: Server = createServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://harness')
    const answer = async (): Promise<unknown> => {
      if (request.method === 'POST' && url.pathname === '/restart') {
        Object.assign(spent, await now())
        // Killed: what it held is lost, as after a crash of a Redis without persistence.
        await redis.stop()
        await new Promise(resolve => setTimeout(resolve, Number(url.searchParams.get('downMs') ?? 0)))
        await redis.start()
        return { restarted: true }
      }
      return await now()
    }
    request.resume()
    answer().then(
      value => { response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(value)) },
      (error: unknown) => { response.writeHead(500).end(String(error)) }
    )
  })
  server.listen(0, '127.0.0.1')
  await new Promise(resolve => server.once('listening', resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise(resolve => { server.closeAllConnections(); server.close(() => resolve()) })
  }
}

async function runScenario (settings: Settings, contender: string, scenario: string, subscribers: number): Promise<FanoutResult | ThroughputResult> {
  const spec = specOf(contender)
  // A redis-server of the run's own, so that counters and restarts concern this run only.
  const redis = spec.redis ? await startRedisServer() : undefined
  const harness = redis === undefined ? undefined : await redisControl(redis)
  // BENCH_CPU_PROF=<dir> writes each server's CPU profile there (open it in Chrome's DevTools).
  const profile = process.env.BENCH_CPU_PROF === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`]
  const env = redis === undefined ? {} : { REDIS_URL: redis.url }
  const servers = Array.from({ length: spec.processes }, () => spawnNode([...profile, '--expose-gc', '--import=tsx', `bench/servers/${spec.file}`, ...spec.args ?? []], env))
  try {
    // Generous: on a loaded machine, compiling a server with tsx alone can take tens of seconds.
    const ready = await Promise.all(servers.map((server, i) => firstLine<{ port: number, controlPort: number }>(server, 90_000, `${contender} server ${i + 1}`)))
    // Each run connects from its own loopback address, so its sockets never wait for ports still
    // in TIME_WAIT from the run before.
    const localAddress = `127.0.0.${2 + (runIndex++ % 250)}`
    const driverSettings: DriverSettings = {
      ...settings.driver,
      contender,
      scenario: scenario as DriverSettings['scenario'],
      origins: ready.map(({ port }) => `http://127.0.0.1:${port}`),
      controls: ready.map(({ controlPort }) => `http://127.0.0.1:${controlPort}`),
      ...(harness === undefined ? {} : { redis: harness.url }),
      localAddress,
      subscribers
    }
    const driver = spawnNode(['--import=tsx', 'bench/clients/driver.ts', JSON.stringify(driverSettings)])
    try {
      return await firstLine<FanoutResult | ThroughputResult>(driver, settings.driverTimeoutMs, `${contender} ${scenario} driver`)
    } finally {
      await stop(driver)
    }
  } finally {
    await Promise.all(servers.map(stop))
    await harness?.close()
    await redis?.close()
  }
}

const median = (values: readonly number[]): number => {
  if (values.length === 0) return NaN
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle] as number : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2
}

/** The figures of one contender at one size, as reported (raw results kept beside them). */
interface Figures {
  fanout?: {
    fanoutMs: number
    fanoutMaxMs: number
    latencyP50Ms: number
    latencyP99Ms: number
    cpuPerEventUs: number
    /** Bytes the server processes allocated on their V8 heaps per delivered event. */
    allocatedPerEventBytes: number
    /** Of cpuPerEventUs, redis-server's part (0 without Redis). */
    redisCpuPerEventUs: number
    /** Redis commands per published event, those run inside scripts included (0 without Redis). */
    redisCommandsPerPublish: number
    /** Of those, scripts run (EVAL, EVALSHA, FCALL): each one round trip and one atomic step. */
    redisScriptsPerPublish: number
    lost: number
    duplicated: number
    errors: number
  }
  cost?: {
    rssPerSubscriberKB: number
    heapPerSubscriberKB: number
    idleCpuPercent: number
  }
  throughput?: {
    deliveriesPerSecond: number
    cpuPerEventUs: number
    allocatedPerEventBytes: number
    redisCpuPerEventUs: number
    redisCommandsPerPublish: number
    redisScriptsPerPublish: number
    serverCpuPercent: number
    latencyP50Ms: number
    latencyP99Ms: number
    lost: number
    duplicated: number
    errors: number
  }
  /** Throughput across a Redis restart (contenders on Redis only). */
  restart?: {
    deliveriesPerSecond: number
    published: number
    publishFailures: number
    /** Gaps reported to subscribers, and the events they covered. */
    gaps: number
    lostWithGap: number
    /** Events missed with no gap reported: silent loss. */
    lost: number
    duplicated: number
    retried: number
    errors: number
  }
}

const groups = ['fanout', 'cost', 'throughput', 'restart'] as const
/** Figures summed over trials rather than their median. */
const counted = ['lost', 'duplicated', 'errors', 'gaps', 'lostWithGap', 'publishFailures', 'retried']

/** Each figure is the median of its trials' (lost events: the sum). */
function medianFigures (trials: readonly Figures[]): Figures {
  const figures: Figures = {}
  for (const group of groups) {
    const present = trials.map(trial => trial[group] as Record<string, number> | undefined).filter(g => g !== undefined)
    const first = present[0]
    if (first === undefined) continue
    const merged: Record<string, number> = {}
    for (const name of Object.keys(first)) {
      const values = present.map(g => g[name] as number)
      merged[name] = counted.includes(name) ? values.reduce((a, b) => a + b, 0) : median(values)
    }
    Object.assign(figures, { [group]: merged })
  }
  return figures
}

/** Scripts run, from commands counted per name (INFO commandstats counts a script's own calls too). */
function scriptsOf (byCommand: Record<string, number>): number {
  return ['eval', 'evalsha', 'eval_ro', 'evalsha_ro', 'fcall', 'fcall_ro'].reduce((sum, name) => sum + (byCommand[name] ?? 0), 0)
}

/** A scenario that did not complete (a subscriber failed, a round timed out) gives no figures. */
function figuresOf (fanout: FanoutResult | undefined, throughput: ThroughputResult | undefined, restart?: ThroughputResult): Figures {
  const figures: Figures = {}
  if (fanout !== undefined && fanout.errors === 0) {
    figures.fanout = {
      fanoutMs: median(fanout.fanoutMs),
      fanoutMaxMs: Math.max(...fanout.fanoutMs),
      latencyP50Ms: fanout.latencyP50Ms,
      latencyP99Ms: fanout.latencyP99Ms,
      cpuPerEventUs: (fanout.serverCpuUs + fanout.redisCpuUs) / fanout.deliveries,
      allocatedPerEventBytes: fanout.serverAllocatedBytes / fanout.deliveries,
      redisCpuPerEventUs: fanout.redisCpuUs / fanout.deliveries,
      redisCommandsPerPublish: fanout.redisCommands / fanout.rounds,
      redisScriptsPerPublish: scriptsOf(fanout.redisByCommand) / fanout.rounds,
      lost: fanout.lost,
      duplicated: fanout.duplicated,
      errors: fanout.errors
    }
    figures.cost = {
      rssPerSubscriberKB: (fanout.memoryHolding.rss - fanout.memoryBefore.rss) / fanout.subscribers / 1024,
      heapPerSubscriberKB: (fanout.memoryHolding.heapUsed - fanout.memoryBefore.heapUsed) / fanout.subscribers / 1024,
      idleCpuPercent: fanout.idleCpuMs / fanout.idleMs * 100
    }
  }
  if (throughput !== undefined && throughput.errors === 0) {
    figures.throughput = {
      deliveriesPerSecond: throughput.delivered / (throughput.elapsedMs / 1000),
      cpuPerEventUs: (throughput.serverCpuUs + throughput.redisCpuUs) / throughput.delivered,
      allocatedPerEventBytes: throughput.serverAllocatedBytes / throughput.delivered,
      redisCpuPerEventUs: throughput.redisCpuUs / throughput.delivered,
      redisCommandsPerPublish: throughput.redisCommands / throughput.published,
      redisScriptsPerPublish: scriptsOf(throughput.redisByCommand) / throughput.published,
      serverCpuPercent: (throughput.serverCpuUs + throughput.redisCpuUs) / 1000 / throughput.elapsedMs * 100,
      latencyP50Ms: throughput.latencyP50Ms,
      latencyP99Ms: throughput.latencyP99Ms,
      lost: throughput.lost,
      duplicated: throughput.duplicated,
      errors: throughput.errors
    }
  }
  if (restart !== undefined && restart.errors === 0) {
    figures.restart = {
      deliveriesPerSecond: restart.delivered / (restart.elapsedMs / 1000),
      published: restart.published,
      publishFailures: restart.publishFailures,
      gaps: restart.gaps,
      lostWithGap: restart.lostWithGap,
      lost: restart.lost,
      duplicated: restart.duplicated,
      retried: restart.retried,
      errors: restart.errors
    }
  }
  return figures
}

type Ratios = { [Group in keyof Figures]?: Record<string, number | null> }

/** Each figure divided by a reference's at the same size; null where the reference's is 0 or missing. */
function ratiosOf (figures: Figures, reference: Figures | undefined): Ratios {
  const ratios: Ratios = {}
  for (const group of groups) {
    const mine = figures[group] as Record<string, number> | undefined
    const theirs = reference?.[group] as Record<string, number> | undefined
    if (mine === undefined) continue
    const groupRatios: Record<string, number | null> = {}
    for (const [name, value] of Object.entries(mine)) {
      const base = theirs?.[name]
      groupRatios[name] = base === undefined || base === 0 || !Number.isFinite(base) ? null : value / base
    }
    ratios[group] = groupRatios
  }
  return ratios
}

interface RunRecord {
  size: number
  contender: string
  figures: Figures
  /** To the floor's figures (bare node:http). */
  ratios: Ratios
  /** To protocol-floor's (a bare Fastify route speaking fastify-comet's protocol), when it ran. */
  ratiosToProtocol: Ratios
  /** The figures of each trial. */
  trials: Figures[]
  raw: Array<{ fanout?: FanoutResult, throughput?: ThroughputResult, restart?: ThroughputResult }>
  failures: string[]
}

interface Target { size: number, target: string, value: number | null, limit: string, met: boolean | null }

function targetsOf (records: readonly RunRecord[], sizes: readonly number[]): Target[] {
  const targets: Target[] = []
  for (const size of sizes) {
    const at = (name: string): RunRecord | undefined => records.find(r => r.size === size && r.contender === name)
    const comet = at('fastify-comet')
    if (comet === undefined) continue
    const check = (target: string, value: number | null | undefined, limit: string, met: (v: number) => boolean): void => {
      const known = value ?? null
      targets.push({ size, target, value: known, limit, met: known === null || !Number.isFinite(known) ? null : met(known) })
    }
    const r = comet.ratios
    // Against protocol-floor, the same protocol on a bare Fastify route: what the plugin adds.
    const p = comet.ratiosToProtocol
    check('CPU per delivered event (fan-out) / protocol-floor', p.fanout?.cpuPerEventUs, '≤ 1.05', v => v <= 1.05)
    check('CPU per delivered event (throughput) / protocol-floor', p.throughput?.cpuPerEventUs, '≤ 1.05', v => v <= 1.05)
    check('fan-out time / protocol-floor', p.fanout?.fanoutMs, '≤ 1.05', v => v <= 1.05)
    check('heap per waiting poll / protocol-floor', p.cost?.heapPerSubscriberKB, '≤ 1.2', v => v <= 1.2)
    check('RSS per waiting poll / protocol-floor', p.cost?.rssPerSubscriberKB, '≤ 1.2', v => v <= 1.2)
    check('RSS per waiting subscriber / floor', r.cost?.rssPerSubscriberKB, '≤ 1.5', v => v <= 1.5)
    check('heap per waiting subscriber / floor', r.cost?.heapPerSubscriberKB, '≤ 1.5', v => v <= 1.5)
    for (const scenario of ['fanout', 'throughput'] as const) {
      check(`bytes allocated per delivered event (${scenario})`, comet.figures[scenario]?.allocatedPerEventBytes, 'reported', () => true)
      check(`bytes allocated per delivered event (${scenario}) / protocol-floor`, p[scenario]?.allocatedPerEventBytes, 'reported', () => true)
    }
    check('server CPU while all wait, % of a core', comet.figures.cost?.idleCpuPercent, '≈ 0 (< 0.5)', v => v < 0.5)
    for (const scenario of ['fanout', 'throughput'] as const) {
      const mine = comet.figures[scenario]?.cpuPerEventUs
      const theirs = at('socket.io')?.figures[scenario]?.cpuPerEventUs
      check(`CPU per delivered event (${scenario}) / socket.io's`, mine === undefined || theirs === undefined ? null : mine / theirs, '< 1', v => v < 1)
    }
    for (const peer of ['faye', 'socket.io']) {
      for (const scenario of ['fanout', 'throughput'] as const) {
        const mine = comet.figures[scenario]?.cpuPerEventUs
        const theirs = at(peer)?.figures[scenario]?.cpuPerEventUs
        check(`${peer} CPU per event (${scenario}) / fastify-comet's`, mine === undefined || theirs === undefined ? null : theirs / mine, '≥ 2', v => v >= 2)
      }
    }
    const metrics = at('fastify-comet-metrics')
    for (const scenario of ['fanout', 'throughput'] as const) {
      const on = metrics?.figures[scenario]?.cpuPerEventUs
      const off = comet.figures[scenario]?.cpuPerEventUs
      check(`CPU per event (${scenario}), metrics on / off`, on === undefined || off === undefined ? null : on / off, '≤ 1.05', v => v <= 1.05)
    }
    const lost = (comet.figures.fanout?.lost ?? 0) + (comet.figures.throughput?.lost ?? 0) +
      (comet.figures.fanout?.duplicated ?? 0) + (comet.figures.throughput?.duplicated ?? 0)
    check('events lost or repeated, all scenarios', lost, '= 0', v => v === 0)
  }
  return [...targets, ...redisTargetsOf(records, sizes)]
}

/** The Redis engine's targets: against the memory engine in the same run, and across sizes. */
function redisTargetsOf (records: readonly RunRecord[], sizes: readonly number[]): Target[] {
  const targets: Target[] = []
  for (const contender of ['fastify-comet-redis', 'fastify-comet-redis-x2']) {
    const commandsAt = (size: number): number | undefined =>
      records.find(r => r.size === size && r.contender === contender)?.figures.fanout?.redisCommandsPerPublish
    const smallest = sizes.find(size => commandsAt(size) !== undefined)
    for (const size of sizes) {
      const redis = records.find(r => r.size === size && r.contender === contender)
      if (redis === undefined) continue
      const memory = records.find(r => r.size === size && r.contender === 'fastify-comet')
      const protocolFloor = records.find(r => r.size === size && r.contender === 'protocol-floor')
      const check = (target: string, value: number | null | undefined, limit: string, met: (v: number) => boolean): void => {
        const known = value ?? null
        targets.push({ size, target: `${contender}: ${target}`, value: known, limit, met: known === null || !Number.isFinite(known) ? null : met(known) })
      }
      const over = (mine: number | undefined, theirs: number | undefined): number | null =>
        mine === undefined || theirs === undefined || theirs === 0 ? null : mine / theirs
      check('fan-out time / fastify-comet (memory)\'s', over(redis.figures.fanout?.fanoutMs, memory?.figures.fanout?.fanoutMs), '≤ 1.5 (at 5,000)', v => v <= 1.5)
      check('CPU per delivered event, fan-out, with redis-server / memory engine\'s', over(redis.figures.fanout?.cpuPerEventUs, memory?.figures.fanout?.cpuPerEventUs), 'reported', () => true)
      for (const scenario of ['fanout', 'throughput'] as const) {
        const figures = redis.figures[scenario]
        const inProcess = figures === undefined ? undefined : figures.cpuPerEventUs - figures.redisCpuPerEventUs
        check(`in-process CPU per delivered event (${scenario}; Node processes only, redis-server excluded) / protocol-floor`,
          over(inProcess, protocolFloor?.figures[scenario]?.cpuPerEventUs), 'reported', () => true)
        check(`bytes allocated per delivered event (${scenario}), Node processes`, figures?.allocatedPerEventBytes, 'reported', () => true)
      }
      check('Redis commands per fan-out event (inside scripts included)', redis.figures.fanout?.redisCommandsPerPublish, 'reported', () => true)
      check('Redis round trips (scripts) per fan-out event', redis.figures.fanout?.redisScriptsPerPublish, 'reported', () => true)
      if (smallest !== undefined && smallest !== size) {
        check(`Redis commands per fan-out event / at ${smallest} subscribers`, over(commandsAt(size), commandsAt(smallest)), '≤ 1.1 (independent of subscribers)', v => v <= 1.1)
      }
      const f = redis.figures
      const silent = (f.fanout?.lost ?? 0) + (f.fanout?.duplicated ?? 0) + (f.throughput?.lost ?? 0) + (f.throughput?.duplicated ?? 0) +
        (f.restart?.lost ?? 0) + (f.restart?.duplicated ?? 0)
      check('events lost silently or repeated, all scenarios (restart included)', silent, '= 0', v => v === 0)
      if (f.restart !== undefined) check('gaps reported across the Redis restart', f.restart.gaps, 'counted (> 0)', v => v > 0)
    }
  }
  return targets
}

function format (value: number | null | undefined, digits = 3): string {
  if (value === null || value === undefined || Number.isNaN(value)) return '-'
  if (!Number.isFinite(value)) return String(value)
  if (Math.abs(value) >= 10 ** digits) return Math.round(value).toString()
  return Number(value.toPrecision(digits)).toString()
}

function cell (value: number | undefined, ratio: number | null | undefined, toProtocol?: number | null): string {
  if (value === undefined) return '-'
  const ratios = [
    ...(ratio === null || ratio === undefined ? [] : [`×${format(ratio, 2)}`]),
    ...(toProtocol === null || toProtocol === undefined ? [] : [`×${format(toProtocol, 3)} proto`])
  ]
  return ratios.length === 0 ? format(value) : `${format(value)} (${ratios.join(', ')})`
}

function table (headers: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const widths = headers.map((header, i) => Math.max(header.length, ...rows.map(row => (row[i] ?? '').length)))
  const line = (cells: readonly string[]): string => `| ${cells.map((c, i) => c.padEnd(widths[i] as number)).join(' | ')} |`
  return [line(headers), `| ${widths.map(w => '-'.repeat(w)).join(' | ')} |`, ...rows.map(line)].join('\n')
}

function renderTables (records: readonly RunRecord[], sizes: readonly number[]): string {
  const out: string[] = []
  for (const size of sizes) {
    const here = records.filter(r => r.size === size)
    if (here.length === 0) continue
    out.push(`\n${size} subscribers: fan-out and cost (× = ratio to the floor; × proto = to protocol-floor)\n`)
    out.push(table(
      ['contender', 'fan-out ms', 'latency p50 ms', 'p99 ms', 'CPU µs/event', 'alloc B/event', 'RSS KB/sub', 'heap KB/sub', 'idle CPU %', 'lost'],
      here.map(({ contender, figures: f, ratios: r, ratiosToProtocol: p }) => [
        contender,
        cell(f.fanout?.fanoutMs, r.fanout?.fanoutMs, p.fanout?.fanoutMs),
        cell(f.fanout?.latencyP50Ms, r.fanout?.latencyP50Ms),
        cell(f.fanout?.latencyP99Ms, r.fanout?.latencyP99Ms),
        cell(f.fanout?.cpuPerEventUs, r.fanout?.cpuPerEventUs, p.fanout?.cpuPerEventUs),
        cell(f.fanout?.allocatedPerEventBytes, r.fanout?.allocatedPerEventBytes, p.fanout?.allocatedPerEventBytes),
        cell(f.cost?.rssPerSubscriberKB, r.cost?.rssPerSubscriberKB, p.cost?.rssPerSubscriberKB),
        cell(f.cost?.heapPerSubscriberKB, r.cost?.heapPerSubscriberKB, p.cost?.heapPerSubscriberKB),
        format(f.cost?.idleCpuPercent),
        format(f.fanout === undefined ? undefined : f.fanout.lost + f.fanout.duplicated)
      ])
    ))
    out.push(`\n${size} subscribers: throughput (× = ratio to the floor; × proto = to protocol-floor)\n`)
    out.push(table(
      ['contender', 'deliveries/s', 'CPU µs/event', 'alloc B/event', 'server CPU %', 'latency p50 ms', 'p99 ms', 'lost'],
      here.map(({ contender, figures: f, ratios: r, ratiosToProtocol: p }) => [
        contender,
        cell(f.throughput?.deliveriesPerSecond, r.throughput?.deliveriesPerSecond),
        cell(f.throughput?.cpuPerEventUs, r.throughput?.cpuPerEventUs, p.throughput?.cpuPerEventUs),
        cell(f.throughput?.allocatedPerEventBytes, r.throughput?.allocatedPerEventBytes, p.throughput?.allocatedPerEventBytes),
        format(f.throughput?.serverCpuPercent),
        cell(f.throughput?.latencyP50Ms, r.throughput?.latencyP50Ms),
        cell(f.throughput?.latencyP99Ms, r.throughput?.latencyP99Ms),
        format(f.throughput === undefined ? undefined : f.throughput.lost + f.throughput.duplicated)
      ])
    ))
    const onRedis = here.filter(r => specOf(r.contender).redis)
    if (onRedis.length > 0) {
      const memory = here.find(r => r.contender === 'fastify-comet')?.figures
      const versus = (value: number | undefined, base: number | undefined): string =>
        value === undefined ? '-' : base === undefined || base === 0 ? format(value) : `${format(value)} (×${format(value / base, 2)})`
      out.push(`\n${size} subscribers: on Redis (× = ratio to fastify-comet on its memory engine; CPU includes redis-server's, its part in brackets)\n`)
      out.push(table(
        ['contender', 'processes', 'fan-out ms', 'CPU µs/event fan-out', 'Redis cmds (scripts)/publish fan-out', 'CPU µs/event throughput', 'Redis cmds (scripts)/publish throughput', 'lost'],
        [...(memory === undefined ? [] : [here.find(r => r.contender === 'fastify-comet') as RunRecord]), ...onRedis].map(({ contender, figures: f }) => [
          contender,
          String(specOf(contender).processes),
          versus(f.fanout?.fanoutMs, memory?.fanout?.fanoutMs),
          `${versus(f.fanout?.cpuPerEventUs, memory?.fanout?.cpuPerEventUs)} [${format(f.fanout?.redisCpuPerEventUs)}]`,
          `${format(f.fanout?.redisCommandsPerPublish)} (${format(f.fanout?.redisScriptsPerPublish)})`,
          `${versus(f.throughput?.cpuPerEventUs, memory?.throughput?.cpuPerEventUs)} [${format(f.throughput?.redisCpuPerEventUs)}]`,
          `${format(f.throughput?.redisCommandsPerPublish)} (${format(f.throughput?.redisScriptsPerPublish)})`,
          format(f.fanout === undefined && f.throughput === undefined ? undefined : (f.fanout?.lost ?? 0) + (f.fanout?.duplicated ?? 0) + (f.throughput?.lost ?? 0) + (f.throughput?.duplicated ?? 0))
        ])
      ))
      out.push(`\n${size} subscribers: throughput across a Redis restart (killed, back empty)\n`)
      out.push(table(
        ['contender', 'published', 'refused while down', 'gaps reported', 'missed after a gap', 'lost silently', 'repeated', 'polls retried'],
        onRedis.map(({ contender, figures: { restart: r } }) => [
          contender, format(r?.published), format(r?.publishFailures), format(r?.gaps), format(r?.lostWithGap), format(r?.lost), format(r?.duplicated), format(r?.retried)
        ])
      ))
    }
    const failures = here.flatMap(r => r.failures.map(failure => `${r.contender}: ${failure}`))
    if (failures.length > 0) out.push(`\nfailures:\n${failures.join('\n')}`)
  }
  return out.join('\n')
}

/** The records of one size: each contender's figures (medians of its trials), their ratios to the floor's and to protocol-floor's. */
function summarize (size: number, names: readonly string[], raw: ReadonlyMap<string, RunRecord['raw']>, failures: ReadonlyMap<string, string[]>): RunRecord[] {
  const summaries = new Map(names.map(contender => {
    const perTrial = (raw.get(contender) ?? []).map(trial => figuresOf(trial.fanout, trial.throughput, trial.restart))
    return [contender, { perTrial, figures: medianFigures(perTrial) }]
  }))
  const floor = summaries.get('floor')?.figures
  const protocolFloor = summaries.get('protocol-floor')?.figures
  return names.map(contender => {
    const { perTrial, figures } = summaries.get(contender) as { perTrial: Figures[], figures: Figures }
    return { size, contender, figures, ratios: ratiosOf(figures, floor), ratiosToProtocol: ratiosOf(figures, protocolFloor), trials: perTrial, raw: raw.get(contender) ?? [], failures: failures.get(contender) ?? [] }
  })
}

function printReport (records: readonly RunRecord[], targets: readonly Target[], sizes: readonly number[]): void {
  process.stdout.write(`${renderTables(records, sizes)}\n`)
  if (targets.length > 0) {
    process.stdout.write(`\nfastify-comet against its targets\n\n${table(['size', 'target', 'value', 'limit', 'met'],
      targets.map(t => [String(t.size), t.target, format(t.value), t.limit, t.met === null ? '?' : t.met ? 'yes' : 'NO']))}\n`)
  }
}

/** Summarizes an earlier run's raw results again (after a change to how figures are made) and prints them. */
function reportAgain (file: string): void {
  const report = JSON.parse(readFileSync(file, 'utf8')) as { meta: { sizes: number[] }, records: RunRecord[], targets: Target[] }
  const records = report.meta.sizes.flatMap(size => {
    const here = report.records.filter(r => r.size === size)
    return summarize(size, here.map(r => r.contender), new Map(here.map(r => [r.contender, r.raw])), new Map(here.map(r => [r.contender, r.failures])))
  })
  report.records = records
  report.targets = targetsOf(records, report.meta.sizes)
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`)
  printReport(records, report.targets, report.meta.sizes)
}

async function main (): Promise<void> {
  const settings = parseArguments(process.argv.slice(2))
  if (settings.report !== undefined) return reportAgain(settings.report)
  const limits = fileLimits()
  const started = new Date()
  const loadBefore = loadavg()
  const note = (text: string): void => { process.stderr.write(`${text}\n`) }
  note(`bench: node ${process.version}, ${cpus().length} CPUs, load ${loadBefore.map(l => l.toFixed(2)).join(' ')}, open files ${limits.soft} (hard limit ${limits.hard}${limits.soft < limits.hard ? '' : ', cannot be raised further'})`)

  // Each side of a subscriber holds a socket, in the server and in the driver.
  const sizes = settings.sizes.filter(size => {
    const fits = size + 200 <= limits.soft
    if (!fits) note(`bench: skipping ${size} subscribers: the open-file limit is ${limits.soft}`)
    return fits
  })

  const records: RunRecord[] = []
  for (const size of sizes) {
    const raw = new Map<string, RunRecord['raw']>(settings.contenders.map(contender => [contender, []]))
    const failures = new Map<string, string[]>()
    for (let trial = 0; trial < settings.trials; trial++) {
      for (const scenario of settings.scenarios) {
        for (const contender of settings.contenders) {
          // A Redis restart concerns only the contenders on Redis.
          if (scenario === 'restart' && !specOf(contender).redis) continue
          note(`bench: trial ${trial + 1} of ${settings.trials}, ${scenario}, ${size} subscribers, ${contender}`)
          const trials = raw.get(contender) as RunRecord['raw']
          const mine = trials[trial] ?? {}
          trials[trial] = mine
          try {
            const result = await runScenario(settings, contender, scenario, size)
            if (result.scenario === 'fanout') mine.fanout = result
            else if (result.scenario === 'restart') mine.restart = result
            else mine.throughput = result
            if (result.errors > 0) failures.set(contender, [...failures.get(contender) ?? [], `${scenario}: ${result.errors} errors, first: ${result.firstError ?? '?'}`])
          } catch (error) {
            failures.set(contender, [...failures.get(contender) ?? [], `${scenario}: ${(error as Error).message}`])
          }
        }
      }
    }
    records.push(...summarize(size, settings.contenders, raw, failures))
  }

  const targets = targetsOf(records, sizes)
  const report = {
    meta: {
      started: started.toISOString(),
      seconds: Math.round((Date.now() - started.getTime()) / 1000),
      node: process.version,
      platform: `${process.platform} ${process.arch}`,
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model ?? 'unknown',
      memoryGB: Math.round(totalmem() / 2 ** 30),
      loadBefore,
      loadAfter: loadavg(),
      openFiles: limits,
      mode: settings.quick ? 'quick' : 'full',
      trials: settings.trials,
      sizes,
      settings: settings.driver
    },
    records,
    targets
  }
  mkdirSync(dirname(settings.out), { recursive: true })
  writeFileSync(settings.out, `${JSON.stringify(report, null, 2)}\n`)

  printReport(records, targets, sizes)
  process.stdout.write(`\nnode ${process.version}, ${cpus().length} × ${report.meta.cpuModel}, load ${loadBefore.map(l => l.toFixed(2)).join(' ')} → ${report.meta.loadAfter.map(l => l.toFixed(2)).join(' ')}, ${report.meta.seconds} s; JSON in ${settings.out}\n`)
}

await main()
