// Not a contender: the floor's design (latest-only.ts) as a plain Fastify route, with no schema and
// no hook. What Fastify's own per-request work costs, and so what bounds fastify-comet, which runs
// inside it.
import Fastify, { type FastifyReply } from 'fastify'
import { serveContender } from './common.js'
import { LatestOnly } from './latest-only.js'

const polls = new LatestOnly<FastifyReply>({
  answer: (reply, body) => { reply.send(body) },
  onHangUp: (reply, listener) => { reply.raw.on('close', listener) }
})

const app = Fastify({ keepAliveTimeout: 600_000, requestTimeout: 0, connectionTimeout: 0 })
app.get<{ Querystring: { ch: string, after?: string } }>('/sub', (request, reply) => {
  reply.type('application/json')
  polls.subscribe(reply, request.query.ch, request.query.after)
  // Nothing returned: the reply is sent later. (Returning `reply` would make Fastify watch the
  // response's end through reply.then(), a cost per request that this bound should not carry.)
})

await app.ready()
await serveContender({
  server: app.server,
  publish: (channel, message) => { polls.publish(channel, message) }
})
