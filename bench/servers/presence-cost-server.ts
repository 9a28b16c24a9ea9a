// The server of bench/presence-cost.ts: the plugin with presence on (PRESENCE=1) or off, on the
// memory engine or on REDIS_URL, with /cpu and /stats for the harness; prints its port.
import Fastify from 'fastify'
import comet from '../../plugin.js'

const url = process.env.REDIS_URL
const engine = url === undefined ? undefined : new (await import('../../lib/engines/redis/index.js')).RedisEngine({ redis: url })
const app = Fastify({ keepAliveTimeout: 600_000, requestTimeout: 0, connectionTimeout: 0 })
await app.register(comet, {
  tries: 300,
  sleep: 2,
  ...(engine === undefined ? {} : { engine }),
  ...(process.env.PRESENCE === '1'
    ? { presence: request => ({ id: String(request.headers['x-user']) }), presenceGrace: 40 }
    : {})
})
app.get('/cpu', async () => process.cpuUsage())
app.get('/stats', async () => ({ pending: app.comet.stats().pending }))
await app.listen({ port: 0, host: '127.0.0.1' })
process.stdout.write(`listening ${(app.server.address() as { port: number }).port}\n`)
