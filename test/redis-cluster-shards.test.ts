// The Redis engine on a sharded Cluster (three masters with a replica each, started by the test):
// channels on every shard, two servers, and a master killed while clients poll and publish.
import t, { type Test } from 'tap'
import { RedisEngine } from '../lib/engines/redis/index.js'
import { eventually, poll, publish, serve, within, type Served } from './helpers.js'
import { channelsIn, startCluster } from './redis-cluster-server.js'

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

t.test('one poll on 24 channels over three masters: its subscriptions go out in one turn, and it gets its events', async t => {
  const a = await serveOnCluster(t, 'onepoll:')
  const b = await serveOnCluster(t, 'onepoll:')
  const channels = channelsIn((await cluster.masters()).map(m => m.slots), 8, 'one').flat()
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
