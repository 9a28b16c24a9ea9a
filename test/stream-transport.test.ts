// The SSE transport (lib/http/stream.ts) on a response the test controls: what it does when the
// queue of a stream that gets no deliveries is past maxStreamQueueBytes at a heartbeat.
import { EventEmitter } from 'node:events'
import type { FastifyReply, FastifyRequest } from 'fastify'
import t from 'tap'
import { CometBus } from '../lib/bus.js'
import { StreamHub } from '../lib/http/stream.js'
import { CometMetrics } from '../lib/metrics.js'
import { fromNow, MemoryEngine } from '../plugin.js'
import { eventually } from './helpers.js'

/** Enough of a ServerResponse: writes are counted, and the test says how much is queued. */
class FakeResponse extends EventEmitter {
  writableLength = 0
  destroyed = false
  writes: string[] = []
  writeHead (): this { return this }
  write (chunk: string): boolean { this.writes.push(chunk); return true }
  end (): void {}
  destroy (): void { this.destroyed = true }
}

t.test('a heartbeat that finds more than maxStreamQueueBytes queued ends the stream as slow, and destroys its response', async t => {
  const engine = new MemoryEngine()
  t.teardown(() => engine.close())
  const metrics = new CometMetrics()
  const bus = new CometBus(engine, { pollTimeoutMs: 60_000, maxPending: Infinity, batchSize: 100, maxPayload: 65536 }, metrics)
  const hub = new StreamHub(bus, metrics, { heartbeatMs: 5, streamLifetimeMs: 60_000, maxStreams: Infinity, maxStreamQueueBytes: 100 })
  const raw = new FakeResponse()
  const reply = { raw, hijack () {}, getHeaders: () => ({}), send () {} } as unknown as FastifyReply
  const request = { headers: { accept: 'text/event-stream' }, raw: { httpVersionMajor: 2, stream: { destroyed: false } } } as unknown as FastifyRequest
  hub.open(request, reply, { channels: ['a'], positions: [fromNow] })
  await eventually(() => raw.writes.length >= 2)
  t.equal(raw.writes[1], ':\n\n', 'heartbeats while the client keeps up')
  raw.writableLength = 101
  await eventually(() => metrics.stats(0, 0, undefined).streams.ended.slow === 1)
  t.equal(raw.destroyed, true)
  t.equal(metrics.stats(0, 0, undefined).streams.open, 0)
})
