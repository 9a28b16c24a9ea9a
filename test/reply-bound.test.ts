// maxReplyBytes: one reply stops at a byte bound, and the client gets the rest at once on its next
// poll, with nothing lost or repeated.
import Fastify, { type FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import comet, { MemoryEngine, type CometOptions } from '../plugin.js'
import { subscribeQuery, type PollReply } from './helpers.js'

async function app (t: Test, options: CometOptions): Promise<FastifyInstance> {
  const fastify = Fastify()
  t.teardown(() => fastify.close())
  await fastify.register(comet, { tries: 1, sleep: 0.01, ...options })
  return fastify
}

async function subscribe (fastify: FastifyInstance, cursors: Record<string, string>): Promise<{ body: PollReply, bytes: number }> {
  const response = await fastify.inject(`/comet/subscribe?${subscribeQuery(cursors)}`)
  return { body: response.json<PollReply>(), bytes: response.rawPayload.length }
}

/** Polls, sending back p each time, until a reply brings nothing; every reply is returned. */
async function drain (fastify: FastifyInstance, cursors: Record<string, string>, most = 100): Promise<PollReply[]> {
  const replies: PollReply[] = []
  for (let i = 0; i < most; i++) {
    const { body } = await subscribe(fastify, cursors)
    if (body.s === 0) return replies
    replies.push(body)
    cursors = body.p
  }
  throw new Error('no end in sight')
}

function received (replies: readonly PollReply[]): Record<string, unknown[]> {
  const all: Record<string, unknown[]> = {}
  for (const reply of replies) {
    for (const [channel, events] of Object.entries(reply.m ?? {})) (all[channel] ??= []).push(...events.map(e => e.data))
  }
  return all
}

t.test('a reply stops at maxReplyBytes; polling again with p gets the rest, each event once and in order', async t => {
  // Regression: one 710-byte request for 32 full channels from "all" made a 200 MiB reply.
  const fastify = await app(t, { maxReplyBytes: 2000 })
  const channels = ['c0', 'c1', 'c2', 'c3']
  const published: Record<string, unknown[]> = {}
  for (let n = 0; n < 10; n++) {
    for (const channel of channels) {
      const data = { n, text: 'é'.repeat(50 + n * 7) }
      await fastify.comet.publish(channel, data)
      ;(published[channel] ??= []).push(data)
    }
  }
  const replies = await drain(fastify, Object.fromEntries(channels.map(c => [c, 'all'])))
  t.ok(replies.length >= 3, `${replies.length} replies`)
  for (const reply of replies) {
    const bytes = Buffer.byteLength(Object.values(reply.m ?? {}).flat().map(e => JSON.stringify(e)).join(','))
    t.ok(bytes <= 2000, `${bytes} bytes of events`)
    t.same(Object.keys(reply.p), channels, 'p names every channel')
    t.notOk(reply.gap)
  }
  t.same(received(replies), published)
})

t.test('a channel none of whose events fit keeps its cursor, "all" included', async t => {
  // About 440 bytes for each large event as it is sent.
  const fastify = await app(t, { maxReplyBytes: 450 })
  await fastify.comet.publish('first', 'x'.repeat(400))
  const second = await fastify.comet.publish('second', 'y'.repeat(400))
  const { id: third } = await fastify.comet.publish('third', 'z'.repeat(400))
  const { id: fourth } = await fastify.comet.publish('third', 'w')
  const { body } = await subscribe(fastify, { first: 'all', second: 'all', third: third })
  t.same(Object.keys(body.m ?? {}), ['first'])
  t.equal(body.p.second, 'all', 'read from the oldest again')
  t.equal(body.p.third, third, 'read after the same cursor again')
  const next = await subscribe(fastify, body.p)
  t.same(next.body.m?.second?.map(e => e.id), [second.id])
  t.same(next.body.m?.third, undefined)
  const last = await subscribe(fastify, next.body.p)
  t.same(last.body.m?.third?.map(e => e.id), [fourth])
})

t.test('an event larger than maxReplyBytes goes out alone', async t => {
  const fastify = await app(t, { maxReplyBytes: 100 })
  await fastify.comet.publish('room', 'small')
  await fastify.comet.publish('room', 'x'.repeat(300))
  await fastify.comet.publish('room', 'small again')
  const replies = await drain(fastify, { room: 'all' })
  t.same(replies.map(r => r.m?.room?.map(e => typeof e.data === 'string' ? e.data.length : 0)), [[5], [300], [11]])
})

t.test('a gap on a channel none of whose events fit is reported once, with those events', async t => {
  const fastify = await app(t, { maxReplyBytes: 500 })
  await fastify.comet.publish('big', 'x'.repeat(400))
  await fastify.comet.publish('restarted', 'y'.repeat(400))
  const otherInstance = 'AAAAAAAA.mwra2dyh.1'
  const replies = await drain(fastify, { big: 'all', restarted: otherInstance })
  t.same(replies.map(r => r.gap), [undefined, ['restarted']])
  t.same(received(replies), { big: ['x'.repeat(400)], restarted: ['y'.repeat(400)] })
})

t.test('a waiting poll woken by a publish bigger than the bound still gets it', async t => {
  const fastify = await app(t, { maxReplyBytes: 100, tries: 20, sleep: 1 })
  // wait=0: the cursors at "now" at once, not after the 20 s this server lets a poll wait.
  const body = (await fastify.inject(`/comet/subscribe?${subscribeQuery({ a: '0', b: '0' })}&wait=0`)).json<PollReply>()
  const waiting = subscribe(fastify, body.p)
  await new Promise(resolve => setImmediate(resolve))
  await fastify.comet.publish('a', 'x'.repeat(300))
  t.same((await waiting).body.m?.a?.map(e => (e.data as string).length), [300])
})

t.test('maxReplyBytes must be a positive integer', async t => {
  const fastify = Fastify()
  t.teardown(() => fastify.close())
  await t.rejects(async () => { await fastify.register(comet, { maxReplyBytes: 0 }) }, { code: 'FST_COMET_INVALID_OPTION', message: /option "maxReplyBytes" must be a positive integer/ })
})

t.test('a gapped channel cut short after some of its events reports its gap with them', async t => {
  // About 440 bytes for each event as it is sent: two fit in a reply, the third waits.
  const fastify = await app(t, { maxReplyBytes: 1000 })
  for (const n of [1, 2, 3]) await fastify.comet.publish('restarted', String(n).repeat(400))
  const otherInstance = 'AAAAAAAA.mwra2dyh.1'
  const replies = await drain(fastify, { restarted: otherInstance })
  t.same(replies.map(r => r.m?.restarted?.length), [2, 1])
  t.same(replies.map(r => r.gap), [['restarted'], undefined], 'the gap comes with the first events, once')
})

t.test('a reply of three-byte characters stays within maxReplyBytes', async t => {
  // 170 "€" are 170 UTF-16 units and 510 bytes of UTF-8: two such events are over 1000 bytes, though
  // two bytes per unit would make them look well within it.
  const fastify = await app(t, { maxReplyBytes: 1000 })
  const euros = '€'.repeat(170)
  await fastify.comet.publish('room', euros)
  await fastify.comet.publish('room', euros)
  const replies = await drain(fastify, { room: 'all' })
  for (const reply of replies) {
    const bytes = Buffer.byteLength(Object.values(reply.m ?? {}).flat().map(e => JSON.stringify(e)).join(','))
    t.ok(bytes <= 1000, `${bytes} bytes of events`)
  }
  t.same(received(replies), { room: [euros, euros] })
})

t.test('the bound counts each event as it is sent, with its braces, names and comma', async t => {
  // Regression: 16 bytes were counted around each event, 18 are sent, and a reply went over the bound.
  const engine = new MemoryEngine()
  t.teardown(() => engine.close())
  const unbounded = await app(t, { engine })
  for (const n of [1, 2, 3]) await unbounded.comet.publish('room', String(n).repeat(100))
  const whole = await subscribe(unbounded, { room: 'all' })
  const sent = Buffer.byteLength((whole.body.m?.room ?? []).map(e => JSON.stringify(e)).join(','))
  const bounded = await app(t, { engine, maxReplyBytes: sent - 1 })
  const cut = await subscribe(bounded, { room: 'all' })
  t.same(cut.body.m?.room?.map(e => e.data), ['1'.repeat(100), '2'.repeat(100)], `three events are ${sent} bytes: two go`)
})
