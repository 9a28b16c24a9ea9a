// The Redis engine's subscriptions against a stand-in subscriber connection, for what a real
// Redis makes a matter of timing: a connection that drops while a subscribe is under way, and a
// notification that comes while a heal reads.
import type { Redis } from 'ioredis'
import t from 'tap'
import { Subscriptions } from '../lib/engines/redis/subscriptions.js'

/** Answers SSUBSCRIBE when told to, once the batch of subscribes has been sent. */
function standIn (): { subscriber: Redis, acknowledge: () => Promise<void> } {
  const waiting: Array<() => void> = []
  const subscriber = {
    ssubscribe: async () => new Promise<void>(resolve => waiting.push(resolve)),
    sunsubscribe: async () => {}
  } as unknown as Redis
  async function acknowledge (): Promise<void> {
    for (let turns = 0; waiting.length === 0 && turns < 100; turns++) await new Promise(resolve => setImmediate(resolve))
    for (const resolve of waiting.splice(0)) resolve()
  }
  return { subscriber, acknowledge }
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
