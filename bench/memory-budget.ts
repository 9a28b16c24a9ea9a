// What the memory engine's history costs in heap: per held event and per channel holding events.
// The fixed costs that historyBytes counts (lib/engines/memory.ts) come from this.
//   node --expose-gc --import=tsx bench/memory-budget.ts [--events=200000] [--channels=100000]
import { MemoryEngine } from '../plugin.js'

const argument = (name: string, fallback: number): number => {
  const given = process.argv.find(a => a.startsWith(`--${name}=`))
  return given === undefined ? fallback : Number(given.slice(name.length + 3))
}
const events = argument('events', 200_000)
const channels = argument('channels', 100_000)

const gc = globalThis.gc
if (gc === undefined) throw new Error('run with node --expose-gc')

function heapUsed (): number {
  gc?.()
  gc?.()
  return process.memoryUsage().heapUsed
}

/** Heap bytes per unit after `fill` has run on a fresh engine, and what historyBytes counted. */
async function measure (units: number, fill: (engine: MemoryEngine) => Promise<void>): Promise<{ heap: number, counted: number }> {
  const engine = new MemoryEngine({ historySize: Number.MAX_SAFE_INTEGER, historyTtl: Infinity, historyChannels: Number.MAX_SAFE_INTEGER })
  const before = heapUsed()
  await fill(engine)
  const after = heapUsed()
  const counted = engine.historyUsage().bytes
  await engine.close()
  return { heap: (after - before) / units, counted: counted / units }
}

// The data of every event is one shared string, so what is measured is the engine's own cost.
const data = '1'
const perEvent = await measure(events, async engine => {
  for (let i = 0; i < events; i++) await engine.publish('room', data)
})
// One event per channel: the channel's cost is what it adds to its event's.
const perChannelAndEvent = await measure(channels, async engine => {
  for (let i = 0; i < channels; i++) await engine.publish(`channel:${i}`, data)
})
const channelNameBytes = `channel:${channels}`.length

const round = (n: number): number => Math.round(n)
console.log(JSON.stringify({
  node: process.version,
  events,
  channels,
  heapBytesPerEvent: round(perEvent.heap),
  countedBytesPerEvent: round(perEvent.counted),
  heapBytesPerChannel: round(perChannelAndEvent.heap - perEvent.heap),
  countedBytesPerChannel: round(perChannelAndEvent.counted - perEvent.counted),
  note: `event data of ${data.length} byte, ids of about 20 characters, channel names of about ${channelNameBytes}`
}, null, 2))
