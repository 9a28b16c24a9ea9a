// Not a contender: the floor's design as a plain Fastify route, with no schema and no hook. What
// Fastify's own per-request work costs, and so what bounds fastify-comet, which runs inside it.
//
//   GET /sub?ch=<channel>[&after=<n>]  →  {"c":<n>,"d":<message>}, or {"c":<n>} on timeout
import Fastify, { type FastifyReply } from 'fastify'
import { host, pollTimeoutSeconds, serveContender } from './common.js'

interface Latest { readonly number: number, readonly reply: string }

const parked = new Map<string, Set<FastifyReply>>()
const latest = new Map<string, Latest>()

const app = Fastify({ keepAliveTimeout: 600_000, requestTimeout: 0, connectionTimeout: 0 })
app.get<{ Querystring: { ch: string, after?: string } }>('/sub', (request, reply) => {
  const { ch: channel, after } = request.query
  reply.type('application/json')
  const last = latest.get(channel)
  if (after !== undefined && last !== undefined && last.number > Number(after)) {
    reply.send(last.reply)
    return
  }
  let waiting = parked.get(channel)
  if (waiting === undefined) parked.set(channel, waiting = new Set())
  const set = waiting
  const timer = setTimeout(() => {
    set.delete(reply)
    reply.send(`{"c":${after ?? last?.number ?? 0}}`)
  }, pollTimeoutSeconds * 1000)
  set.add(reply)
  reply.raw.on('close', () => {
    clearTimeout(timer)
    set.delete(reply)
  })
  // Nothing returned: the reply is sent later. (Returning `reply` would make Fastify watch the
  // response's end through reply.then(), a cost per request that this bound should not carry.)
})

await serveContender({
  server: app.server,
  async listen () {
    await app.listen({ port: 0, host })
    const address = app.server.address()
    if (address === null || typeof address === 'string') throw new Error('expected a TCP address')
    return address.port
  },
  publish (channel, message) {
    const number = (latest.get(channel)?.number ?? 0) + 1
    const reply = `{"c":${number},"d":${JSON.stringify(message)}}`
    latest.set(channel, { number, reply })
    const waiting = parked.get(channel)
    if (waiting === undefined) return
    parked.delete(channel)
    for (const waiter of waiting) waiter.send(reply)
  }
})
