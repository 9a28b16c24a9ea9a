// fastify-comet, as a user runs it: Fastify without a logger, the plugin with its in-memory engine
// and default options, but a long-poll timeout (tries × sleep) longer than any phase of a run.
// With REDIS_URL (the harness's own redis-server), on its Redis engine with default options: two of
// these processes on one Redis share the channels.
import Fastify from 'fastify'
import comet from '../../plugin.js'
import { pollTimeoutSeconds, serveContender } from './common.js'

const url = process.env.REDIS_URL
const engine = url === undefined ? undefined : new (await import('../../lib/engines/redis/index.js')).RedisEngine({ redis: url })

const app = Fastify({ keepAliveTimeout: 600_000, requestTimeout: 0, connectionTimeout: 0 })
await app.register(comet, { tries: pollTimeoutSeconds / 2, sleep: 2, ...(engine === undefined ? {} : { engine }) })

await app.ready()
await serveContender({
  server: app.server,
  publish: (channel, message) => app.comet.publish(channel, message)
})
