// fastify-comet on its Redis engine, as bench/servers/comet.ts otherwise: Fastify without a logger,
// default options, a long-poll timeout longer than any phase. The harness starts a redis-server of
// its own and names it in REDIS_URL; two of these processes on one Redis share the channels.
import Fastify from 'fastify'
import comet from '../../plugin.js'
import { RedisEngine } from '../../lib/engines/redis/index.js'
import { pollTimeoutSeconds, serveContender } from './common.js'

const url = process.env.REDIS_URL
if (url === undefined) throw new Error('comet-redis.ts needs REDIS_URL')
const engine = new RedisEngine({ redis: url })
const app = Fastify({ keepAliveTimeout: 600_000, requestTimeout: 0, connectionTimeout: 0 })
await app.register(comet, { tries: pollTimeoutSeconds / 2, sleep: 2, engine })

await app.ready()
await serveContender({
  server: app.server,
  publish: (channel, message) => app.comet.publish(channel, message)
})
