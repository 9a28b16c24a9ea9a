// The Redis engine's subscriptions against a stand-in subscriber connection, for what a real
// Redis makes a matter of timing: a connection that drops while a subscribe is under way, and a
// notification that comes while a heal reads.
import { mock } from 'node:test'
import type { Redis } from 'ioredis'
import t from 'tap'
import { Subscriptions } from '../lib/engines/redis/subscriptions.js'

/** Answers SSUBSCRIBE when told to, once the batch of subscribes has been sent. */
function standIn (): { subscriber: Redis, acknowledge: () => Promise<void>, unsubscribed: string[] } {
  const waiting: Array<() => void> = []
  const unsubscribed: string[] = []
  const subscriber = {
    ssubscribe: async () => new Promise<void>(resolve => waiting.push(resolve)),
    sunsubscribe: async (...channels: string[]) => { unsubscribed.push(...channels) }
  } as unknown as Redis
  async function acknowledge (): Promise<void> {
    for (let turns = 0; waiting.length === 0 && turns < 100; turns++) await new Promise(resolve => setImmediate(resolve))
    for (const resolve of waiting.splice(0)) resolve()
  }
  return { subscriber, acknowledge, unsubscribed }
}

const watcher = (seen: string[]) => ({ notify: (channel: string) => { seen.push(channel) } })

t.test('an acknowledgement that comes after the connection dropped does not count', async t => {
  const { subscriber, acknowledge } = standIn()
  const subscriptions = new Subscriptions(subscriber, 'p:', 1000, () => {})
  const watching = subscriptions.watch('room', watcher([]))
  await new Promise(resolve => setImmediate(resolve))
  await new Promise(resolve => setImmediate(resolve))
  subscriptions.onDisconnect()
  await acknowledge()
  await t.rejects(watching as Promise<void>, { code: 'FST_COMET_ENGINE_UNAVAILABLE', message: /the subscription connection dropped/ })
  const again = subscriptions.watch('room', watcher([]))
  t.ok(again instanceof Promise, 'the next watcher subscribes again')
  await acknowledge()
  await again
})

t.test('a heal wakes the watchers only when the top moved, and not when a notification came during its read', async t => {
  const { subscriber, acknowledge } = standIn()
  const subscriptions = new Subscriptions(subscriber, 'p:', 1000, () => {})
  const seen: string[] = []
  const watching = subscriptions.watch('room', watcher(seen))
  await acknowledge()
  await watching
  subscriptions.noteTop('room', 'AAAAAAAAAAAA.1')
  t.equal(subscriptions.heal('room', 'AAAAAAAAAAAA.1', 'AAAAAAAAAAAA.1'), 0, 'nothing moved')
  subscriptions.onMessage('p:{room}:n', 'AAAAAAAAAAAA.1 AAAAAAAAAAAA.2 "two"')
  t.equal(subscriptions.heal('room', 'AAAAAAAAAAAA.1', 'AAAAAAAAAAAA.2'), 0, 'the notification woke the watcher already')
  t.equal(subscriptions.heal('room', 'AAAAAAAAAAAA.2', 'BBBBBBBBBBBB.0'), 1, 'a new epoch: woken')
  t.same(seen, ['room', 'room'])
  t.equal(subscriptions.heal('gone', 'AAAAAAAAAAAA.2', 'BBBBBBBBBBBB.0'), 0, 'a channel no longer kept')
  subscriptions.close()
})

t.test('a read is shared only when sent after the acknowledgement, and until the next notification, drop, heal or failure', async t => {
  const { subscriber, acknowledge } = standIn()
  const subscriptions = new Subscriptions(subscriber, 'p:', 1000, () => {})
  const backlog = (next: string) => Promise.resolve({ events: [], next, gap: false })
  subscriptions.keepRead('room', 'A.1 10', backlog('A.1'))
  t.equal(subscriptions.sharedRead('room', 'A.1 10'), undefined, 'no subscription: not kept')
  const watching = subscriptions.watch('room', watcher([]))
  subscriptions.keepRead('room', 'A.1 10', backlog('A.1'))
  t.equal(subscriptions.sharedRead('room', 'A.1 10'), undefined, 'sent before the acknowledgement: not kept')
  await acknowledge()
  await watching

  const first = backlog('A.1')
  subscriptions.keepRead('room', 'A.1 10', first)
  t.equal(subscriptions.sharedRead('room', 'A.1 10'), first, 'kept')
  t.equal(subscriptions.sharedRead('room', 'A.1 2'), undefined, 'another limit is another read')
  subscriptions.onMessage('p:{room}:n', 'AAAAAAAAAAAA.1 AAAAAAAAAAAA.2 "two"')
  t.equal(subscriptions.sharedRead('room', 'A.1 10'), undefined, 'a notification ends it')

  subscriptions.keepRead('room', 'A.1 10', backlog('A.1'))
  t.equal(subscriptions.heal('room', 'AAAAAAAAAAAA.2', 'BBBBBBBBBBBB.0'), 1)
  t.equal(subscriptions.sharedRead('room', 'A.1 10'), undefined, 'a heal that wakes ends it')

  const failing = Promise.reject(new Error('down'))
  subscriptions.keepRead('room', 'A.1 10', failing)
  await failing.catch(() => {})
  await new Promise(resolve => setImmediate(resolve))
  t.equal(subscriptions.sharedRead('room', 'A.1 10'), undefined, 'a failed read is not kept')

  const failingLate = Promise.reject(new Error('down'))
  subscriptions.keepRead('room', 'A.1 10', failingLate)
  const replaced = backlog('A.1')
  subscriptions.onMessage('p:{room}:n', 'BBBBBBBBBBBB.0 BBBBBBBBBBBB.1 "one"')
  subscriptions.keepRead('room', 'A.1 10', replaced)
  await failingLate.catch(() => {})
  await new Promise(resolve => setImmediate(resolve))
  t.equal(subscriptions.sharedRead('room', 'A.1 10'), replaced, 'a read that failed after it was replaced does not remove its successor')

  for (let i = 0; i < 70; i++) subscriptions.keepRead('room', `A.${i} 1`, backlog('A.1'))
  t.ok(subscriptions.sharedRead('room', 'A.62 1') !== undefined && subscriptions.sharedRead('room', 'A.63 1') === undefined, 'at most 64 kept per channel (the one above and 63 of these)')

  subscriptions.onDisconnect()
  t.equal(subscriptions.sharedRead('room', 'A.1 10'), undefined, 'a drop ends it')
  subscriptions.close()
})

t.test('a kept read is not shared past the time a notification would answer', async t => {
  const { subscriber, acknowledge } = standIn()
  const subscriptions = new Subscriptions(subscriber, 'p:', 1, () => {})
  const watching = subscriptions.watch('room', watcher([]))
  await acknowledge()
  await watching
  subscriptions.keepRead('room', 'A.1 10', Promise.resolve({ events: [], next: 'A.1', gap: false }))
  await new Promise(resolve => setTimeout(resolve, 10))
  t.equal(subscriptions.sharedRead('room', 'A.1 10'), undefined)
  subscriptions.close()
})

t.test('a subscribe that Redis refuses fails its watchers with a 503', async t => {
  const subscriber = {
    ssubscribe: async () => { throw new Error("Stream isn't writeable and enableOfflineQueue options is false") },
    sunsubscribe: async () => {}
  } as unknown as Redis
  const subscriptions = new Subscriptions(subscriber, 'p:', 1000, () => {})
  await t.rejects(subscriptions.watch('room', watcher([])) as Promise<void>, { code: 'FST_COMET_ENGINE_UNAVAILABLE', message: /Stream isn't writeable/ })
  subscriptions.close()
})

t.test('a drop before the batch is sent: an acknowledgement on the new connection does not count for it', async t => {
  const { subscriber, acknowledge } = standIn()
  const subscriptions = new Subscriptions(subscriber, 'p:', 1000, () => {})
  const seen: string[] = []
  const watching = subscriptions.watch('room', watcher(seen))
  await new Promise(resolve => setImmediate(resolve))
  // Not yet flushed: nothing is under way on the connection that drops.
  subscriptions.onDisconnect()
  subscriptions.onMessage('p:{room}:n', 'AAAAAAAAAAAA.1 AAAAAAAAAAAA.2 "two"')
  t.same(seen, [], 'a message before the acknowledgement tells no one')
  await acknowledge()
  await t.rejects(watching as Promise<void>, { code: 'FST_COMET_ENGINE_UNAVAILABLE', message: /the subscription connection dropped/ })
  subscriptions.close()
})

t.test('a watcher back within 1 s of the last one leaving keeps the subscription, and its notifications, past that second', async t => {
  // node:test's fake timers: the second after the leave passes at once.
  mock.timers.enable({ apis: ['setTimeout'] })
  t.teardown(() => { mock.timers.reset() })
  const { subscriber, acknowledge, unsubscribed } = standIn()
  const subscriptions = new Subscriptions(subscriber, 'p:', 1000, () => {})
  t.teardown(() => { subscriptions.close() })
  const leaving = watcher([])
  const watching = subscriptions.watch('room', leaving)
  await acknowledge()
  await watching
  subscriptions.unwatch('room', leaving)
  mock.timers.tick(500)
  const seen: string[] = []
  t.equal(subscriptions.watch('room', watcher(seen)), undefined, 'the subscription is still there')
  mock.timers.tick(2000)
  await new Promise(resolve => setImmediate(resolve))
  t.same(unsubscribed, [], 'no SUNSUBSCRIBE')
  subscriptions.onMessage('p:{room}:n', 'AAAAAAAAAAAA.1 AAAAAAAAAAAA.2 "two"')
  t.same(seen, ['room'], 'the watcher is told of a publish')
})
