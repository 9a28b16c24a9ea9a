// fastify-comet, as a user runs it: Fastify without a logger, the plugin with its in-memory engine
// and default options, but a long-poll timeout (tries × sleep) longer than any phase of a run.
import Fastify from 'fastify'
import comet from '../../plugin.js'
import { pollTimeoutSeconds, serveContender } from './common.js'

const app = Fastify({ keepAliveTimeout: 600_000, requestTimeout: 0, connectionTimeout: 0 })
await app.register(comet, { tries: pollTimeoutSeconds / 2, sleep: 2 })

await app.ready()
await serveContender({
  server: app.server,
  publish: (channel, message) => app.comet.publish(channel, message)
})
