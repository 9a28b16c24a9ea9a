// The example chat: `npm start`, then open http://localhost:3000 in two windows. The log shows
// warnings and errors only (LOG_LEVEL=info shows each request, polls still quiet), and Prometheus
// metrics are at /metrics.
//
// Each room is a channel, `chat:<room>`. The page (public/) subscribes with the plugin's client,
// served at /comet/client.js. Messages are posted to POST /rooms/<room>/messages, which validates
// them, stores them and publishes them from server code, as a real application would; the plugin's
// own HTTP publish route is closed, so nobody can put unchecked data on a channel.
import type { AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'
import fastifyStatic from '@fastify/static'
import Fastify from 'fastify'
import { Registry } from 'prom-client'
import comet from '../plugin.js'
import { registerCometMetrics } from '../lib/prometheus.js'
import { MessageStore, type ChatMessage } from './messages.js'

const port = Number(process.env.PORT ?? 3000)
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  throw new Error(`PORT must be a port number from 0 to 65535 (got ${JSON.stringify(process.env.PORT)})`)
}
const host = process.env.HOST ?? 'localhost'

// What a page joining a room is shown: the plugin's history on load, the store after a gap.
const recentMessages = 100

// Polls are quiet whatever the level (the plugin's default); the rest of the app logs at LOG_LEVEL.
const fastify = Fastify({ logger: { level: process.env.LOG_LEVEL ?? 'warn' } })
await fastify.register(comet, {
  // HTTP publishes get 403; fastify.comet.publish() below is not asked.
  authorizePublish: () => false,
  historySize: recentMessages,
  // A page opened after a quiet hour still gets the room's last lines with its first poll.
  historyTtl: 24 * 60 * 60 // seconds
})
await fastify.register(fastifyStatic, { root: fileURLToPath(new URL('public/', import.meta.url)) })

const store = new MessageStore({ perRoom: recentMessages, rooms: 1000 })

const roomParams = {
  type: 'object',
  required: ['room'],
  // With the prefix "chat:", always a valid channel name.
  properties: { room: { type: 'string', pattern: '^[A-Za-z0-9_-]{1,64}$' } }
} as const

const message = {
  type: 'object',
  required: ['seq', 'name', 'text', 'at'],
  properties: { seq: { type: 'integer' }, name: { type: 'string' }, text: { type: 'string' }, at: { type: 'string' } }
} as const

interface RoomRoute {
  Params: { room: string }
}

fastify.post<RoomRoute & { Body: { name: string, text: string } }>('/rooms/:room/messages', {
  bodyLimit: 4096,
  schema: {
    params: roomParams,
    body: {
      type: 'object',
      required: ['name', 'text'],
      additionalProperties: false,
      properties: {
        // At least one character that is not white space: the handler trims.
        name: { type: 'string', minLength: 1, maxLength: 40, pattern: '\\S' },
        text: { type: 'string', minLength: 1, maxLength: 1000, pattern: '\\S' }
      }
    },
    response: { 201: message }
  }
}, async (request, reply) => {
  const { room } = request.params
  // Stored before it is published: a page that reloads the room after a gap must find it.
  const posted: ChatMessage = store.add(room, { name: request.body.name.trim(), text: request.body.text.trim() })
  await fastify.comet.publish(`chat:${room}`, posted)
  return reply.code(201).send(posted)
})

// What a page reloads after a gap: the plugin's history lost events (a restart, say); the store has them.
fastify.get<RoomRoute>('/rooms/:room/messages', {
  schema: {
    params: roomParams,
    response: { 200: { type: 'object', required: ['messages'], properties: { messages: { type: 'array', items: message } } } }
  }
}, async request => ({ messages: store.recent(request.params.room) }))

fastify.get('/stats', async () => fastify.comet.stats())

// For Prometheus to scrape.
const registry = new Registry()
registerCometMetrics(fastify.comet, { registry })
fastify.get('/metrics', async (_request, reply) => reply.type(registry.contentType).send(await registry.metrics()))

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
const shown = host === '0.0.0.0' || host === '::' ? 'localhost' : host.includes(':') ? `[${host}]` : host
console.log(`Chat ready: open http://${shown}:${(fastify.server.address() as AddressInfo).port} in two browser windows (Ctrl-C stops it)`)
