// The Redis engine on a sharded Cluster (three masters with a replica each, started by the test):
// channels on every shard, two servers, and a master killed while clients poll and publish.
import t, { type Test } from 'tap'
import { RedisEngine } from '../lib/engines/redis/index.js'
import { eventually, poll, publish, serve, within, type Served } from './helpers.js'
import { channelsIn, startCluster, twoInOneSlot } from './redis-cluster-server.js'

const cluster = await startCluster(t)

async function serveOnCluster (t: Test, keyPrefix: string): Promise<Served & { engine: RedisEngine }> {
  const engine = new RedisEngine({ redis: cluster.client(), keyPrefix })
  t.teardown(() => engine.close())
  const served = await serve(t, { engine, tries: 1, sleep: 20 })
  await eventually(() => engine.health().connected, 5000)
  return { ...served, engine }
}

t.test('24 polls at once on channels over three masters each get their event (regression: CROSSSLOT)', async t => {
  const a = await serveOnCluster(t, 'crossslot:')
  const b = await serveOnCluster(t, 'crossslot:')
  const masters = await cluster.masters()
  t.equal(masters.length, 3)
  const channels = channelsIn(masters.map(m => m.slots), 8).flat()
  const cursors = await Promise.all(channels.map(async channel => (await publish(a.origin, channel, 'first')).body.id as string))
  const polls = channels.map((channel, i) => poll(b.origin, { [channel]: cursors[i] as string }, { signal: AbortSignal.timeout(10_000) }))
  await eventually(() => b.app.comet.stats().pending === channels.length, 5000)
  const published = await Promise.all(channels.map(async channel => await publish(a.origin, channel, 'second')))
  t.same(published.map(p => p.status), channels.map(() => 200))
  const answers = await within(Promise.all(polls), 8000, 'the 24 polls')
  t.same(answers.map(a => [a.status, a.body.m]), channels.map((channel, i) => [200, { [channel]: [{ id: published[i]?.body.id, data: 'second' }] }]))
})

t.test('one poll on 26 channels over three masters: its subscriptions go out in one turn, and it gets its events', async t => {
  const a = await serveOnCluster(t, 'onepoll:')
  const b = await serveOnCluster(t, 'onepoll:')
  // And two in one slot: one SSUBSCRIBE for both.
  const channels = [...channelsIn((await cluster.masters()).map(m => m.slots), 8, 'one').flat(), ...twoInOneSlot()]
  const cursors: Record<string, string> = {}
  for (const channel of channels) cursors[channel] = (await publish(a.origin, channel, 'first')).body.id
  let answeredEarly = false
  const waiting = poll(b.origin, cursors, { signal: AbortSignal.timeout(10_000) }).finally(() => { answeredEarly = true })
  await eventually(() => answeredEarly || b.app.comet.stats().pending === 1, 5000)
  const last = channels[channels.length - 1] as string
  const second = await publish(a.origin, last, 'second')
  const answer = await within(waiting, 8000, 'the poll')
  t.same([answer.status, answer.body.m], [200, { [last]: [{ id: second.body.id, data: 'second' }] }], JSON.stringify(answer.body))
})

/**
 * Polls one channel from `cursor` until it has seen `lastId`: every event in order, and whether a
 * gap was reported on the way.
 */
async function collect (origin: string, channel: string, cursor: string, lastId: string): Promise<{ data: unknown[], gap: boolean }> {
  const data: unknown[] = []
  let gap = false
  for (let i = 0; i < 20 && cursor !== lastId; i++) {
    const answer = await within(poll(origin, { [channel]: cursor }, { signal: AbortSignal.timeout(10_000) }), 5000, `a poll on ${channel}`)
    if (answer.status !== 200) throw new Error(`poll on ${channel}: ${answer.status} ${JSON.stringify(answer.body)}`)
    gap ||= answer.body.gap?.includes(channel) ?? false
    for (const event of answer.body.m?.[channel] ?? []) data.push(event.data)
    cursor = answer.body.p[channel] as string
  }
  return { data, gap }
}

t.test('a master killed: its shard answers 503 without hanging, the others serve, and after the failover every cursor gets its events or a gap', async t => {
  const a = await serveOnCluster(t, 'failover:')
  const b = await serveOnCluster(t, 'failover:')
  const masters = await cluster.masters()
  const [doomed, ...others] = channelsIn(masters.map(m => m.slots), 3, 'fo') as [string[], ...string[][]]
  const channels = [...doomed, ...others.flat()]
  const cursors: Record<string, string> = {}
  for (const channel of channels) cursors[channel] = (await publish(a.origin, channel, 'first')).body.id
  // B watches every channel through the failover, one poll each.
  const waiting = channels.map(channel => poll(b.origin, { [channel]: cursors[channel] as string }, { signal: AbortSignal.timeout(20_000) }))
  await eventually(() => b.app.comet.stats().pending === waiting.length, 5000)

  const acknowledged = new Map<string, unknown[]>(channels.map(channel => [channel, []]))
  const send = async (channel: string, data: string): Promise<{ status: number, ms: number, body: any }> => {
    const started = Date.now()
    const reply = await within(publish(a.origin, channel, data), 3000, `a publish on ${channel}`)
    if (reply.status === 200) acknowledged.get(channel)?.push(data)
    return { ...reply, ms: Date.now() - started }
  }
  await cluster.nodes.find(node => node.port === masters[0]?.port)?.crash()
  const killedAt = Date.now()
  const other = others[0]?.[0] as string
  const elsewhere = await send(other, 'elsewhere during')
  t.equal(elsewhere.status, 200, 'another shard takes publishes during the failover')
  const refusals: Array<{ status: number, ms: number, retryAfter: string | null }> = []
  let recovered = 0
  const publishMs: number[] = []
  for (let i = 0; i < 100 && recovered === 0; i++) {
    const started = Date.now()
    const answer = await within(poll(b.origin, { [doomed[0] as string]: 'AAAAAAAAAAAA.0' }), 3000, 'a new poll during the failover')
    if (answer.status !== 200) {
      refusals.push({ status: answer.status, ms: Date.now() - started, retryAfter: answer.headers.get('retry-after') })
      t.equal(answer.headers.get('retry-after'), '1')
    }
    const reply = await send(doomed[0] as string, `during ${i}`)
    publishMs.push(reply.ms)
    if (reply.status === 200) recovered = Date.now()
    else {
      t.same([reply.status, reply.body.code], [503, 'FST_COMET_ENGINE_UNAVAILABLE'])
      refusals.push({ status: reply.status, ms: reply.ms, retryAfter: null })
      await new Promise(resolve => setTimeout(resolve, 50))
    }
  }
  t.ok(recovered > 0, 'the shard takes publishes again after the failover')
  t.ok(refusals.length > 0 && refusals.every(r => r.status === 503), `refused with 503 meanwhile: ${JSON.stringify(refusals)}`)
  t.comment(`shard unavailable for ${recovered - killedAt} ms; polls refused in ${refusals.filter(r => r.retryAfter !== null).map(r => r.ms).join(', ')} ms; publishes answered in ${publishMs.join(', ')} ms`)
  await cluster.settled()
  // Nothing more is published on the failed shard: B catches up from history by itself.
  const wokenOnShard = await within(Promise.all(waiting.slice(0, doomed.length)), 5000, 'the polls from before on the failed shard')
  t.same(wokenOnShard.map(w => [w.status, w.body.gap]), doomed.map(channel => [200, [channel]]),
    'each poll from before on the failed shard is answered with a gap: a new master, whose history may lack acknowledged events')

  const last: Record<string, string> = {}
  for (const channel of channels) {
    const reply = await send(channel, 'after')
    t.equal(reply.status, 200)
    last[channel] = reply.body.id
  }
  const woken = await within(Promise.all(waiting), 10_000, 'the polls from before')
  t.same(woken.map(w => w.status), channels.map(() => 200), 'every poll from before is answered')
  for (const channel of channels) {
    const seen = await collect(b.origin, channel, cursors[channel] as string, last[channel] as string)
    const sent = acknowledged.get(channel) as unknown[]
    if (seen.gap) t.same(seen.data, sent.slice(sent.length - seen.data.length), `${channel}: a gap, then the newest acknowledged events in order`)
    else t.same(seen.data, sent, `${channel}: every acknowledged event, once, in order`)
  }
})

t.test('a lazyConnect Cluster client: a watch before its first connection waits for it, not forever (regression)', async t => {
  const client = cluster.client({ lazyConnect: true })
  const engine = new RedisEngine({ redis: client, keyPrefix: 'lazy:' })
  t.teardown(() => engine.close())
  const notified: string[] = []
  const watching = engine.watch('room', { notify: channel => { notified.push(channel) } })
  t.ok(watching instanceof Promise)
  await client.connect()
  await within(Promise.resolve(watching), 5000, 'the watch')
  await engine.publish('room', '"one"')
  await eventually(() => notified.length === 1)
})
