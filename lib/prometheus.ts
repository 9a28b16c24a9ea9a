// The Prometheus helper, `fastify-comet/prometheus`: registers the plugin's metrics with a
// prom-client registry. Every value is read from `stats()` when the registry is scraped, so the
// helper adds nothing to the work of a poll or a publish. prom-client is an optional peer
// dependency: only this module loads it.
import { Counter, Gauge, Histogram, register as globalRegistry, type Aggregator, type Metric, type MetricType, type Registry } from 'prom-client'
import type { EngineHealth } from './engines/engine.js'
import { errors } from './errors.js'
import type { CometStats } from './metrics.js'

export interface CometPrometheusOptions {
  /**
   * The registry to register the metrics with.
   * @default prom-client's global registry (`register`)
   */
  registry?: Registry
  /**
   * Prefix of every metric name.
   * @default 'comet_'
   */
  prefix?: string
}

/** The metric that registerCometMetrics() registers first, by which it knows a registry has them. */
const firstMetric = 'waiting_polls'
/** Which fastify.comet each first metric reports: a registry.clear() drops the metric, and this with it. */
const registeredFor = new WeakMap<Metric, CometStatsSource>()

/** What the helper needs of `fastify.comet`. */
export interface CometStatsSource {
  stats (): CometStats
}

/**
 * Registers gauges, counters and the publish-to-answer histogram of `comet` (`fastify.comet`,
 * after the plugin is registered) with a prom-client registry. The engine's gauges and counters
 * are registered when the engine reports its health (an engine backed by a server).
 */
export function registerCometMetrics (comet: CometStatsSource, { registry = globalRegistry, prefix = 'comet_' }: CometPrometheusOptions = {}): void {
  // Twice for one fastify.comet on one registry is harmless: the metrics are there already. For
  // another instance it is refused: keeping the first's metrics, or moving them to the second,
  // would silently report an instance that is not the one asked for.
  const present = registry.getSingleMetric(prefix + firstMetric)
  if (present !== undefined && registeredFor.get(present) === comet) return
  if (present !== undefined) throw new errors.FST_COMET_METRICS_ALREADY_REGISTERED(prefix + firstMetric)
  const registers = [registry]
  // One stats() per scrape, however many metrics read it.
  let scraped: CometStats | undefined
  const stats = (): CometStats => {
    if (scraped === undefined) {
      scraped = comet.stats()
      queueMicrotask(() => { scraped = undefined })
    }
    return scraped
  }

  // How prom-client's AggregatorRegistry merges the workers of a cluster: by default it sums.
  const gauge = (name: string, help: string, value: (s: CometStats) => number, aggregator: Aggregator = 'sum'): void => {
    // eslint-disable-next-line no-new
    new Gauge({ name: prefix + name, help, registers, aggregator, collect () { this.set(value(stats())) } })
  }
  const counter = (name: string, help: string, value: (s: CometStats) => number): void => {
    // eslint-disable-next-line no-new
    new Counter({ name: prefix + name, help, registers, collect () { this.reset(); this.inc(value(stats())) } })
  }
  const labelledCounter = (name: string, help: string, label: string, values: (s: CometStats) => Record<string, number>): void => {
    // eslint-disable-next-line no-new
    new Counter({
      name: prefix + name,
      help,
      labelNames: [label],
      registers,
      collect () {
        this.reset()
        for (const [value, count] of Object.entries(values(stats()))) this.inc({ [label]: value }, count)
      }
    })
  }

  gauge(firstMetric, 'Long-polls waiting right now.', s => s.pending)
  registeredFor.set(registry.getSingleMetric(prefix + firstMetric) as Metric, comet)
  gauge('channels', 'Channels the engine holds state for.', s => s.channels)
  counter('events_published_total', 'Events published through this instance.', s => s.published)
  counter('events_delivered_total', 'Events handed to polls, once per poll that received them.', s => s.delivered)
  // stats().answered names every reason, so each series exists from the start, at 0, for rate().
  labelledCounter('polls_answered_total', 'Polls answered, by reason: events (events or a gap), timeout, wait0 (wait=0 with nothing new), close, superseded (another poll pipelined behind it).', 'reason', s => s.answered)
  counter('hang_ups_total', 'Polls whose client hung up before they were answered.', s => s.hangUps)
  counter('gaps_total', 'Channels reported in the gap of a reply.', s => s.gaps)
  labelledCounter('errors_total', 'Error replies of the plugin\'s routes, by error code (or status code).', 'code', s => s.errors)
  gauge('open_streams', 'Streams (Server-Sent Events) open right now.', s => s.streams.open)
  counter('stream_messages_total', 'SSE messages sent to streams: events, gaps, and the position each stream opens with.', s => s.streams.messages)
  counter('stream_bytes_total', 'Bytes written to streams, heartbeats included.', s => s.streams.bytes)
  labelledCounter('streams_ended_total', 'Streams ended, by reason: hang-up, slow (past maxStreamQueueBytes), lifetime, close, error.', 'reason', s => s.streams.ended)
  registry.registerMetric(new StatsHistogram(prefix + 'publish_to_answer_seconds',
    'Seconds from a publish (as the bus learns of it) to the answer of each poll it woke.', stats))

  if (comet.stats().engine !== undefined) {
    // An engine that has health() always reports it.
    const engine = (s: CometStats): EngineHealth => s.engine as EngineHealth
    // Summed over a cluster's workers it would count them; 1 only while every one is connected.
    gauge('engine_connected', '1 while the engine is connected to its store, else 0.', s => engine(s).connected ? 1 : 0, 'min')
    counter('engine_reconnections_total', 'Times the engine lost its connection and made it again.', s => engine(s).reconnections)
    counter('engine_healed_notifications_total', 'Waiting polls woken after a reconnection because their channel moved meanwhile.', s => engine(s).healedNotifications)
  }
}

/** A histogram whose buckets are the plugin's own, read from stats() at each scrape. */
class StatsHistogram extends Histogram {
  readonly #name: string
  readonly #help: string
  readonly #stats: () => CometStats

  constructor (name: string, help: string, stats: () => CometStats) {
    const { buckets } = stats().publishToAnswerMs
    super({ name, help, buckets: buckets.filter(b => b.le !== Infinity).map(b => b.le / 1000), registers: [] })
    this.#name = name
    this.#help = help
    this.#stats = stats
  }

  override async get (): Promise<Awaited<ReturnType<Histogram['get']>>> {
    const { buckets, sum, count } = this.#stats().publishToAnswerMs
    const name = this.#name
    // What prom-client's own histogram gives, less the collect function it never calls from here.
    return {
      name,
      help: this.#help,
      // prom-client types MetricType as an enum that its JavaScript does not export.
      type: 'histogram' as unknown as MetricType,
      aggregator: 'sum',
      values: [
        ...buckets.map(b => ({ metricName: `${name}_bucket`, labels: { le: b.le === Infinity ? '+Inf' : b.le / 1000 }, value: b.count })),
        { metricName: `${name}_sum`, labels: {}, value: sum / 1000 },
        { metricName: `${name}_count`, labels: {}, value: count }
      ]
    } as Awaited<ReturnType<Histogram['get']>>
  }

  // The registry formats the text exposition from this one when a metric has it.
  async getForPromString (): Promise<Awaited<ReturnType<Histogram['get']>>> {
    return this.get()
  }
}
