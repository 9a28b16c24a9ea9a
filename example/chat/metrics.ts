// The chat's /metrics, for Prometheus. One process serves its own registry. Under WORKERS, each
// scrape lands on any worker, and a counter read from one worker and then another would seem to
// jump back (Prometheus takes that for a restart), so the worker asks the cluster's primary, which
// gathers every worker's registry and sums them with prom-client's AggregatorRegistry.
import cluster from 'node:cluster'
import type { FastifyInstance } from 'fastify'
import { AggregatorRegistry, type Registry } from 'prom-client'

// The message a worker sends the primary for the cluster's metrics, and the primary's answer.
const metricsRequest = 'chat:metrics-request'
const metricsAnswer = 'chat:metrics-answer'
// prom-client waits 5 s for the workers; this covers that and the round trip.
const askTimeoutMs = 10_000

interface MetricsRequest { type: typeof metricsRequest, id: number }
interface MetricsAnswer { type: typeof metricsAnswer, id: number, metrics?: string, error?: string }

/** GET /metrics: this process's registry, or the whole cluster's when this is a worker. */
export function metricsRoute (fastify: FastifyInstance, registry: Registry): void {
  if (cluster.isWorker) {
    // prom-client's worker side: the primary's AggregatorRegistry reads this registry.
    AggregatorRegistry.setRegistries([registry])
    // eslint-disable-next-line no-new
    new AggregatorRegistry()
    process.on('message', onAnswer)
  }
  const metrics = cluster.isWorker ? askThePrimary : () => registry.metrics()
  fastify.get('/metrics', async (_request, reply) => reply.type(registry.contentType).send(await metrics()))
}

/** In the cluster's primary: answers the workers' requests with the metrics of all of them, summed. */
export function answerMetricsRequests (): void {
  const aggregator = new AggregatorRegistry()
  cluster.on('message', (worker, message: Partial<MetricsRequest>) => {
    if (message?.type !== metricsRequest || typeof message.id !== 'number') return
    const { id } = message
    aggregator.clusterMetrics().then(
      metrics => worker.send({ type: metricsAnswer, id, metrics } satisfies MetricsAnswer),
      (error: Error) => worker.send({ type: metricsAnswer, id, error: error.message } satisfies MetricsAnswer)
    )
  })
}

let lastRequest = 0
const waitingAnswers = new Map<number, { resolve: (metrics: string) => void, reject: (error: Error) => void }>()

function askThePrimary (): Promise<string> {
  const id = ++lastRequest
  return new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => settle(id, unavailable(`the cluster's primary sent no metrics within ${askTimeoutMs} ms`)), askTimeoutMs)
    waitingAnswers.set(id, {
      resolve: metrics => { clearTimeout(timer); resolve(metrics) },
      reject: error => { clearTimeout(timer); reject(error) }
    })
    process.send?.({ type: metricsRequest, id } satisfies MetricsRequest)
  })
}

function onAnswer (message: Partial<MetricsAnswer>): void {
  if (message?.type !== metricsAnswer || typeof message.id !== 'number') return
  settle(message.id, message.error === undefined ? message.metrics ?? '' : unavailable(`the cluster's metrics could not be gathered: ${message.error}`))
}

function settle (id: number, outcome: string | Error): void {
  const waiting = waitingAnswers.get(id)
  if (waiting === undefined) return
  waitingAnswers.delete(id)
  if (typeof outcome === 'string') waiting.resolve(outcome)
  else waiting.reject(outcome)
}

/** A 503 for Prometheus: this scrape failed, the next may not. */
function unavailable (message: string): Error {
  return Object.assign(new Error(message), { statusCode: 503, code: 'CHAT_METRICS_UNAVAILABLE' })
}
