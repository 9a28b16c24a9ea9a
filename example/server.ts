// A minimal server: the plugin's routes under /comet, a route that publishes from server code and
// the plugin's statistics. `npm start`, then try the curl session in README.md.
import Fastify from 'fastify'
import comet from '../plugin.js'

const port = Number(process.env.PORT ?? 3000)
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  throw new Error(`PORT must be a port number from 0 to 65535 (got ${JSON.stringify(process.env.PORT)})`)
}
const host = process.env.HOST ?? 'localhost'

const fastify = Fastify({ logger: true })
await fastify.register(comet)

// Server code publishes without HTTP, so authorizePublish is not asked.
fastify.post('/tick', async () => fastify.comet.publish('clock', { time: new Date().toISOString() }))

fastify.get('/stats', async () => fastify.comet.stats())

// close() answers the waiting long-polls first; a second signal ends the process at once.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    fastify.log.info({ signal }, 'closing')
    fastify.close().catch(error => {
      fastify.log.error(error)
      process.exitCode = 1
    })
  })
}

try {
  await fastify.listen({ port, host })
} catch (error) {
  fastify.log.error(error)
  process.exit(1)
}
