// The delivery guarantee as a property (test/delivery-property.ts), on two servers sharing one
// Redis: every poll and every publish goes to either server, as a load balancer without sticky
// sessions would send them. A smaller budget than the memory engine's run, to keep npm test fast;
// REDIS_PROPERTY_RUNS and REDIS_PROPERTY_SECONDS make a longer soak.
import t from 'tap'
import { RedisEngine } from '../lib/engines/redis/index.js'
import { deliveryProperty, HISTORY_SIZE, PRESENCE_OPTIONS, SLEEP, TRIES } from './delivery-property.js'
import { closeServer, serve } from './helpers.js'
import { startRedis } from './redis-server.js'

const redis = await startRedis(t)
let runs = 0

deliveryProperty(t, 'two servers on one Redis', async (limits, presence) => {
  // A key prefix per run: each run starts from empty channels.
  const keyPrefix = `run${runs++}:`
  const servers = await Promise.all([0, 1].map(async () => {
    const engine = new RedisEngine({ redis: redis.url, keyPrefix, historySize: HISTORY_SIZE })
    const served = await serve(t, { tries: TRIES, sleep: SLEEP, ...limits, engine, ...(presence ? PRESENCE_OPTIONS : {}) })
    return { ...served, engine }
  }))
  return {
    apps: servers.map(s => s.app),
    origins: servers.map(s => s.origin),
    async close () {
      await Promise.all(servers.map(s => closeServer(s.app)))
      await Promise.all(servers.map(s => s.engine.close()))
    }
  }
}, {
  numRuns: Number(process.env.REDIS_PROPERTY_RUNS ?? 25),
  timeLimitMs: Number(process.env.REDIS_PROPERTY_SECONDS ?? 20) * 1000
})
