// The Prometheus helper: the exposition prom-client makes of the plugin's metrics, parsed back with
// a Prometheus text-format parser, has every metric with its type, labels and value.
import Fastify from 'fastify'
import parsePrometheus, { type ParsedFamily } from 'parse-prometheus-text-format'
import { AggregatorRegistry, Gauge, Registry } from 'prom-client'
import t from 'tap'
import comet, { MemoryEngine, type EngineHealth } from '../plugin.js'
import { registerCometMetrics } from '../lib/prometheus.js'
import { eventually, poll, publish, serve } from './helpers.js'

async function scrape (registry: Registry): Promise<Map<string, ParsedFamily>> {
  const families = parsePrometheus(await registry.metrics())
  return new Map(families.map(family => [family.name, family]))
}

/** The value of a metric's one sample, or of the sample with these labels. */
function value (families: Map<string, ParsedFamily>, name: string, labels: Record<string, string> = {}): number {
  const family = families.get(name)
  const sample = family?.metrics.find(m => JSON.stringify(m.labels ?? {}) === JSON.stringify(labels))
  if (sample?.value === undefined) throw new Error(`no sample of ${name} with ${JSON.stringify(labels)}`)
  return Number(sample.value)
}

t.test('every metric is exposed with its type and the values of stats()', async t => {
  const { app, origin } = await serve(t, { authorizePublish: (_request, channel) => channel !== 'closed' })
  const registry = new Registry()
  registerCometMetrics(app.comet, { registry })

  const waiting = [poll(origin, { a: '0' }), poll(origin, { a: '0', b: '0' })]
  const idle = poll(origin, { idle: '0' })
  await eventually(() => app.comet.stats().pending === 3)
  await app.comet.publish('a', 1)
  await Promise.all(waiting)
  await (await fetch(`${origin}/comet/subscribe?subscribed[c]=0&wait=0`)).arrayBuffer()
  t.equal((await publish(origin, 'closed', 1)).status, 403)

  const families = await scrape(registry)
  t.same(Object.fromEntries([...families].map(([name, family]) => [name, family.type])), {
    comet_waiting_polls: 'GAUGE',
    comet_channels: 'GAUGE',
    comet_events_published_total: 'COUNTER',
    comet_events_delivered_total: 'COUNTER',
    comet_polls_answered_total: 'COUNTER',
    comet_hang_ups_total: 'COUNTER',
    comet_gaps_total: 'COUNTER',
    comet_errors_total: 'COUNTER',
    comet_open_streams: 'GAUGE',
    comet_stream_messages_total: 'COUNTER',
    comet_stream_bytes_total: 'COUNTER',
    comet_streams_ended_total: 'COUNTER',
    comet_publish_to_answer_seconds: 'HISTOGRAM'
  }, 'the metrics and their types; no engine metrics for the memory engine')
  for (const family of families.values()) t.match(family.help, /\w/, `${family.name} has help`)

  t.equal(value(families, 'comet_waiting_polls'), 1)
  t.equal(value(families, 'comet_channels'), 2, 'a, which holds an event, and idle, which a poll waits on')
  t.equal(value(families, 'comet_events_published_total'), 1)
  t.equal(value(families, 'comet_events_delivered_total'), 2)
  t.equal(value(families, 'comet_polls_answered_total', { reason: 'events' }), 2)
  t.equal(value(families, 'comet_polls_answered_total', { reason: 'wait0' }), 1)
  t.equal(value(families, 'comet_polls_answered_total', { reason: 'timeout' }), 0, 'every reason has a series from the start')
  t.equal(value(families, 'comet_polls_answered_total', { reason: 'close' }), 0)
  t.equal(value(families, 'comet_hang_ups_total'), 0)
  t.equal(value(families, 'comet_gaps_total'), 0)
  t.equal(value(families, 'comet_errors_total', { code: 'FST_COMET_FORBIDDEN' }), 1)
  t.equal(value(families, 'comet_open_streams'), 0)
  t.equal(value(families, 'comet_stream_messages_total'), 0)
  t.equal(value(families, 'comet_stream_bytes_total'), 0)
  t.equal(value(families, 'comet_streams_ended_total', { reason: 'slow' }), 0, 'every reason of a stream\'s end has a series from the start')

  const [histogram] = families.get('comet_publish_to_answer_seconds')?.metrics ?? []
  const stats = app.comet.stats().publishToAnswerMs
  t.equal(Number(histogram?.count), 2)
  t.equal(Number(histogram?.sum), stats.sum / 1000, 'the sum in seconds')
  // Bucket bounds in seconds, in order (an object's integer-like keys, "1" and "5", come first).
  const buckets = Object.entries(histogram?.buckets ?? {}).map(([le, count]) => ({ le: le === '+Inf' ? Infinity : Number(le), count: Number(count) }))
  buckets.sort((a, b) => a.le - b.le)
  t.same(buckets, stats.buckets.map(b => ({ le: b.le / 1000, count: b.count })), 'the buckets, in seconds')

  // A second scrape reads the counters again rather than adding to them.
  await app.comet.publish('nobody', 2)
  const again = await scrape(registry)
  t.equal(value(again, 'comet_events_published_total'), 2)
  t.equal(value(again, 'comet_polls_answered_total', { reason: 'events' }), 2)
  t.equal(Number(again.get('comet_publish_to_answer_seconds')?.metrics[0]?.count), 2)
  await app.close()
  await idle
})

t.test('an engine that reports its health adds its metrics; the prefix is the caller\'s', async t => {
  class ConnectedEngine extends MemoryEngine {
    state: EngineHealth = { connected: true, reconnections: 1, healedNotifications: 3 }
    health (): EngineHealth { return this.state }
  }
  const engine = new ConnectedEngine()
  t.teardown(() => engine.close())
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(comet, { engine })
  const registry = new Registry()
  registerCometMetrics(app.comet, { registry, prefix: 'live_' })

  let families = await scrape(registry)
  t.ok([...families.keys()].every(name => name.startsWith('live_')), 'every name has the prefix')
  t.equal(families.get('live_engine_connected')?.type, 'GAUGE')
  t.equal(value(families, 'live_engine_connected'), 1)
  t.equal(families.get('live_engine_reconnections_total')?.type, 'COUNTER')
  t.equal(value(families, 'live_engine_reconnections_total'), 1)
  t.equal(value(families, 'live_engine_healed_notifications_total'), 3)

  engine.state = { connected: false, reconnections: 2, healedNotifications: 3 }
  families = await scrape(registry)
  t.equal(value(families, 'live_engine_connected'), 0)
  t.equal(value(families, 'live_engine_reconnections_total'), 2)
})

t.test('a cluster\'s workers summed by AggregatorRegistry: counters, polls and the histogram add up; engine_connected is 1 only while every worker is', async t => {
  class ConnectedEngine extends MemoryEngine {
    state: EngineHealth = { connected: true, reconnections: 0, healedNotifications: 0 }
    health (): EngineHealth { return this.state }
  }
  // Two "workers": what each registry gives the primary is getMetricsAsJSON(), as in a cluster.
  const workers = await Promise.all([1, 2].map(async published => {
    const engine = new ConnectedEngine()
    t.teardown(() => engine.close())
    const app = Fastify()
    t.teardown(() => app.close())
    await app.register(comet, { engine })
    const registry = new Registry()
    registerCometMetrics(app.comet, { registry })
    for (let i = 0; i < published; i++) await app.comet.publish('a', i)
    return { engine, registry }
  }))
  const [first] = workers
  const aggregate = async (): Promise<Map<string, ParsedFamily>> => {
    const summed = AggregatorRegistry.aggregate(await Promise.all(workers.map(({ registry }) => registry.getMetricsAsJSON())))
    return new Map(parsePrometheus(await summed.metrics()).map(family => [family.name, family]))
  }

  let families = await aggregate()
  t.equal(value(families, 'comet_events_published_total'), 3, 'the publishes of both')
  t.equal(value(families, 'comet_waiting_polls'), 0)
  t.equal(families.get('comet_publish_to_answer_seconds')?.type, 'HISTOGRAM', 'the histogram survives the merge')
  t.equal(value(families, 'comet_engine_connected'), 1, 'both connected: 1, not 2')
  if (first !== undefined) first.engine.state = { connected: false, reconnections: 0, healedNotifications: 0 }
  families = await aggregate()
  t.equal(value(families, 'comet_engine_connected'), 0, 'one worker lost its store: 0')
})

t.test('without a registry, the metrics go to prom-client\'s global registry', async t => {
  const { register } = await import('prom-client')
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(comet)
  registerCometMetrics(app.comet)
  t.teardown(() => register.clear())
  const families = await scrape(register)
  t.equal(value(families, 'comet_waiting_polls'), 0)
})

t.test('registerCometMetrics twice for one fastify.comet on one registry changes nothing', async t => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(comet)
  const registry = new Registry()
  registerCometMetrics(app.comet, { registry })
  const once = await registry.metrics()
  // Regression: this threw prom-client's "A metric with the name comet_waiting_polls has already been registered".
  registerCometMetrics(app.comet, { registry })
  t.equal(await registry.metrics(), once, 'the same metrics, each once')
})

t.test('registerCometMetrics for another fastify.comet on a registry that has its metrics: FST_COMET_METRICS_ALREADY_REGISTERED, saying what to do', async t => {
  const [first, second] = [Fastify(), Fastify()]
  for (const app of [first, second]) {
    t.teardown(() => app.close())
    await app.register(comet)
  }
  const registry = new Registry()
  registerCometMetrics(first.comet, { registry })
  t.throws(() => registerCometMetrics(second.comet, { registry }), {
    code: 'FST_COMET_METRICS_ALREADY_REGISTERED',
    message: /^fastify-comet: the registry has a metric named comet_waiting_polls already.*give each instance a prefix .* or a registry of its own, or remove the old instance's metrics \(registry.clear\(\)\)/
  })

  // Each of what the message advises works.
  registerCometMetrics(second.comet, { registry, prefix: 'second_' })
  await second.comet.publish('room', 1)
  const families = await scrape(registry)
  t.same([value(families, 'comet_events_published_total'), value(families, 'second_events_published_total')], [0, 1])
  registry.clear()
  registerCometMetrics(second.comet, { registry })
  t.equal(value(await scrape(registry), 'comet_events_published_total'), 1, 'after registry.clear(), the new instance\'s')
})

t.test('registerCometMetrics on a registry with a metric of the user\'s of the same name: FST_COMET_METRICS_ALREADY_REGISTERED', async t => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(comet)
  const registry = new Registry()
  registry.registerMetric(new Gauge({ name: 'comet_waiting_polls', help: 'mine', registers: [] }))
  t.throws(() => registerCometMetrics(app.comet, { registry }), { code: 'FST_COMET_METRICS_ALREADY_REGISTERED' })
})
