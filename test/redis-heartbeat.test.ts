// The Redis engine's heartbeat against stand-in connections whose PINGs the test answers, fails or
// leaves unanswered: stuck after a whole interval without an answer, free again at the next answer.
import type { Redis } from 'ioredis'
import t from 'tap'
import { Heartbeat } from '../lib/engines/redis/heartbeat.js'
import { eventually } from './helpers.js'

interface StandIn { client: Redis, pings: Array<{ resolve: () => void, reject: (error: Error) => void }>, status: string }

/** With `answering`, every PING is answered at once. */
function standIn (answering = false): StandIn {
  const standIn: StandIn = { client: undefined as unknown as Redis, pings: [], status: 'ready' }
  standIn.client = {
    get status () { return standIn.status },
    ping: async () => answering ? await Promise.resolve() : await new Promise<void>((resolve, reject) => standIn.pings.push({ resolve, reject }))
  } as unknown as Redis
  return standIn
}

t.test('a connection is stuck once a PING waits a whole interval, and free at its answer; a failed PING or a connection down is no answer', async t => {
  const a = standIn()
  const b = standIn(true)
  const events: string[] = []
  const heartbeat = new Heartbeat(10, () => [{ key: 'a', client: a.client }, { key: 'b', client: b.client }], key => events.push(`stuck ${key}`), key => events.push(`answered ${key}`))
  t.teardown(() => heartbeat.stop())
  await eventually(() => a.pings.length === 1)
  await eventually(() => events.includes('stuck a'))
  t.ok(heartbeat.isStuck('a') && !heartbeat.isStuck('b') && heartbeat.anyStuck)
  t.equal(a.pings.length, 1, 'no second PING while the first waits')

  a.pings.shift()?.resolve()
  await eventually(() => events.includes('answered a'))
  t.notOk(heartbeat.anyStuck)

  // A PING that fails (the connection dropped) frees the way for the next one, and is no answer.
  await eventually(() => a.pings.length === 1)
  a.status = 'reconnecting'
  a.pings.shift()?.reject(new Error('Connection is closed.'))
  const stuckBefore = events.filter(e => e === 'stuck a').length
  await new Promise(resolve => setTimeout(resolve, 50))
  t.equal(a.pings.length, 0, 'no PING while the connection is down')
  t.equal(events.filter(e => e === 'stuck a').length, stuckBefore, 'a connection down is not taken as stuck: its state tells')
  a.status = 'ready'
  await eventually(() => a.pings.length === 1)
  t.same(events.filter(e => e.startsWith('answered')), ['answered a'])
})
