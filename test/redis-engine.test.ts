// The engine contract, and what is particular to the Redis engine (cursors, options, keys), on a
// private redis-server.
import t from 'tap'
import { RedisEngine } from '../lib/engines/redis/index.js'
import { engineContract } from './engine-contract.js'
import { startRedis } from './redis-server.js'

const redis = await startRedis(t)
let engines = 0
// A prefix per engine: the contract's tests reuse channel names, and each expects a fresh store.
const prefix = (): string => `contract${engines++}:`

engineContract(t, 'RedisEngine', options => new RedisEngine({ redis: redis.url, keyPrefix: prefix(), ...options }))
