// The SSE transport (lib/http/stream.ts) on a response the test controls: what it does when the
// queue of a stream that gets no deliveries is past maxStreamQueueBytes at a heartbeat.
import { EventEmitter } from 'node:events'
import type { FastifyReply, FastifyRequest } from 'fastify'
import t from 'tap'
import { CometBus } from '../lib/bus/bus.js'
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

t.test('a stream whose client hangs up while its watch is acknowledged never opens; one failed with a non-Error gets an error reply', async t => {
  const memory = new MemoryEngine()
  t.teardown(() => memory.close())
  let acknowledge: () => void = () => {}
  let reads: 'ok' | 'string' = 'ok'
  const engine = {
    publish: (channel: string, json: string) => memory.publish(channel, json),
    read: async (channel: string, position: Parameters<MemoryEngine['read']>[1], limit: number) => {
      if (reads === 'string') throw 'not an Error' // eslint-disable-line @typescript-eslint/only-throw-error
      return memory.read(channel, position, limit)
    },
    watch: async () => await new Promise<void>(resolve => { acknowledge = resolve }),
    unwatch: () => {},
    channelCount: () => 0,
    close: async () => {}
  }
  const metrics = new CometMetrics()
  const bus = new CometBus(engine, { pollTimeoutMs: 60_000, maxPending: Infinity, batchSize: 100, maxPayload: 65536 }, metrics)
  const hub = new StreamHub(bus, metrics, { heartbeatMs: 1000, streamLifetimeMs: 60_000, maxStreams: Infinity, maxStreamQueueBytes: 100 })
  const request = { headers: { accept: 'text/event-stream' }, raw: { httpVersionMajor: 2, stream: { destroyed: false } } } as unknown as FastifyRequest

  const raw = new FakeResponse()
  let settled = false
  hub.open(request, { raw, hijack () { t.fail('hijacked') }, getHeaders: () => ({}), send () { t.fail('sent') } } as unknown as FastifyReply, { channels: ['a'], positions: [fromNow] }, () => { settled = true })
  raw.emit('close')
  acknowledge()
  await new Promise(resolve => setImmediate(resolve))
  t.equal(settled, true, 'the route hears that the stream is settled')
  t.equal(raw.writes.length, 0)
  t.same(metrics.stats(0, 0, undefined).streams.ended, { 'hang-up': 0, slow: 0, lifetime: 0, close: 0, error: 0 }, 'a stream that never opened is not counted as ended')

  reads = 'string'
  const sent: unknown[] = []
  hub.open(request, { raw: new FakeResponse(), hijack () {}, getHeaders: () => ({}), send (error: unknown) { sent.push(error) } } as unknown as FastifyReply, { channels: ['a'], positions: [fromNow] })
  acknowledge()
  await eventually(() => sent.length === 1)
  t.match(sent[0], { message: 'not an Error' })
})
