// The Redis engine on a Redis Cluster (of one node serving every slot, started by the test): the
// engine contract through an ioredis Cluster client, so every script runs in its channel's slot
// and notifications travel by sharded pub/sub (SSUBSCRIBE on the node that owns the slot).
import { Cluster } from 'ioredis'
import t from 'tap'
import { RedisEngine } from '../lib/engines/redis/index.js'
import { engineContract } from './engine-contract.js'
import { startRedis } from './redis-server.js'

const redis = await startRedis(t, { cluster: true })
const cluster = new Cluster([{ host: '127.0.0.1', port: redis.port }])
t.teardown(() => cluster.disconnect())
let engines = 0

engineContract(t, 'RedisEngine on a Cluster', options => new RedisEngine({ redis: cluster, keyPrefix: `cluster${engines++}:`, ...options }))

t.test('the client passed in stays open after the engines close', async t => {
  t.equal(await cluster.ping(), 'PONG')
})
