// The example chat: `npm start`, then open http://localhost:3000 in two windows. The log shows
// warnings and errors only (LOG_LEVEL=info shows each request, polls still quiet), and Prometheus
// metrics are at /metrics.
//
// Each room is a channel, `chat:<room>`. The page (public/) subscribes with the plugin's client,
// served at /comet/client.js. Messages are posted to POST /rooms/<room>/messages, which validates
// them, stores them and publishes them from server code, as a real application would; the plugin's
// own HTTP publish route is closed, so nobody can put unchecked data on a channel.
//
// With REDIS_URL, the plugin runs on its Redis engine and the messages are stored in Redis too, so
// that several processes serve one chat; WORKERS=<n> then runs n processes on one port
// (node:cluster, see cluster.ts). In every mode it prints one line once it listens, and /metrics
// reports the whole chat (a cluster's workers summed, metrics.ts).
import cluster from 'node:cluster'
import type { AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'
import fastifyStatic from '@fastify/static'
import Fastify from 'fastify'
import comet, { type CometEngine } from 'fastify-comet'
import { registerCometMetrics } from 'fastify-comet/prometheus'
import { Registry } from 'prom-client'
import { MessageStore, RedisMessageStore, type ChatMessage, type ChatStore } from './messages.js'
import { metricsRoute } from './metrics.js'
import { connectOrExit, shownRedisUrl } from './redis-connection.js'

/** A setting the chat cannot run with: one line saying so, not a stack trace. */
function exitWith (message: string): never {
  console.error(message)
  process.exit(1)
}

const port = Number(process.env.PORT ?? 3000)
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  exitWith(`PORT must be a port number from 0 to 65535 (got ${JSON.stringify(process.env.PORT)})`)
}
const host = process.env.HOST ?? 'localhost'
const redisUrl = process.env.REDIS_URL === '' ? undefined : process.env.REDIS_URL
const workers = Number(process.env.WORKERS ?? 1)
if (!Number.isInteger(workers) || workers < 1 || workers > 64) {
  exitWith(`WORKERS must be a number of processes from 1 to 64 (got ${JSON.stringify(process.env.WORKERS)})`)
}
if (workers > 1 && redisUrl === undefined) {
  // Each process would have its own rooms: a page would see the messages of one process only.
  exitWith('WORKERS needs REDIS_URL: processes share their rooms through Redis, e.g. WORKERS=2 REDIS_URL=redis://127.0.0.1:6379 npm start')
}

// What a page joining a room is shown: the plugin's history on load, the store after a gap.
const recentMessages = 100
// A page opened after a quiet day still gets the room's last lines with its first poll.
const keepSeconds = 24 * 60 * 60

if (workers > 1 && cluster.isPrimary) {
  // Checked once here, so that a wrong REDIS_URL gets one line, not one per worker.
  const reached = await connectOrExit(redisUrl as string, () => {})
  reached.disconnect()
  const { runCluster } = await import('./cluster.js')
  runCluster({ workers, onListening: sayReady })
} else {
  await serve()
}

/** The one line the chat prints, once it listens (all its workers, for a cluster). */
function sayReady (listeningPort: number): void {
  const shown = host === '0.0.0.0' || host === '::' ? 'localhost' : host.includes(':') ? `[${host}]` : host
  const how = [
    ...(workers > 1 ? [`${workers} processes`] : []),
    ...(redisUrl === undefined ? [] : [`on Redis at ${shownRedisUrl(redisUrl)}`]),
    'Ctrl-C stops it'
  ].join(', ')
  console.log(`Chat ready: open http://${shown}:${listeningPort} in two browser windows (${how})`)
}

async function serve (): Promise<void> {
  // Polls are quiet whatever the level (the plugin's default); the rest of the app logs at LOG_LEVEL.
  const fastify = Fastify({ logger: { level: process.env.LOG_LEVEL ?? 'warn' } })
  const { engine, store } = redisUrl === undefined
    ? { engine: undefined, store: new MessageStore({ perRoom: recentMessages, rooms: 1000 }) }
    : await onRedis(fastify, redisUrl)

  await fastify.register(comet, {
    // HTTP publishes get 403; fastify.comet.publish() below is not asked.
    authorizePublish: () => false,
    ...(engine === undefined ? { historySize: recentMessages, historyTtl: keepSeconds } : { engine })
  })
  await fastify.register(fastifyStatic, { root: fileURLToPath(new URL('public/', import.meta.url)) })

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
    const posted: ChatMessage = await fromStore(reply, store.add(room, { name: request.body.name.trim(), text: request.body.text.trim() }))
    await fastify.comet.publish(`chat:${room}`, posted)
    return reply.code(201).send(posted)
  })

  // What a page shows on joining a room, and reloads after a gap (the plugin's history lost events,
  // a restart, say): the store's messages, and the channel's position read before them, which the
  // page subscribes after. A message published in between is in both, never in neither.
  fastify.get<RoomRoute>('/rooms/:room/messages', {
    schema: {
      params: roomParams,
      response: { 200: { type: 'object', required: ['position', 'messages'], properties: { position: { type: 'string' }, messages: { type: 'array', items: message } } } }
    }
  }, async (request, reply) => {
    const position = await fastify.comet.position(`chat:${request.params.room}`)
    return { position, messages: await fromStore(reply, store.recent(request.params.room)) }
  })

  fastify.get('/stats', async () => fastify.comet.stats())

  // For Prometheus to scrape.
  const registry = new Registry()
  registerCometMetrics(fastify.comet, { registry })
  metricsRoute(fastify, registry)

  // close() answers the waiting long-polls first; a second signal ends the process at once.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      fastify.log.info({ signal }, 'closing')
      fastify.close().then(() => {
        // A worker's channel to the cluster's primary would keep it running.
        if (cluster.isWorker) process.disconnect?.()
      }, error => {
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
  // A cluster's primary says when all its workers listen (cluster.ts).
  if (!cluster.isWorker) sayReady((fastify.server.address() as AddressInfo).port)
}

/** The Redis engine and a store in Redis, both closed with the server. */
async function onRedis (fastify: ReturnType<typeof Fastify>, url: string): Promise<{ engine: CometEngine, store: ChatStore }> {
  // Loaded only here: plain `npm start` needs neither ioredis nor the engine.
  const { RedisEngine } = await import('fastify-comet/redis')
  const redis = await connectOrExit(url, error => { fastify.log.warn({ err: error }, 'the chat store lost Redis; reconnecting') })
  const engine = new RedisEngine({ redis: url, historySize: recentMessages, historyTtl: keepSeconds })
  fastify.addHook('onClose', async () => {
    // The engine was passed in, so the plugin leaves it to us.
    await engine.close()
    redis.disconnect()
  })
  return { engine, store: new RedisMessageStore(redis, { perRoom: recentMessages, ttl: keepSeconds, keyPrefix: 'chat-store:' }) }
}

/** What the store answers, or a 503 with Retry-After when it cannot be reached (Redis down). */
async function fromStore<T> (reply: { header (name: string, value: string): unknown }, answer: Promise<T>): Promise<T> {
  try {
    return await answer
  } catch (cause) {
    reply.header('retry-after', '1')
    throw Object.assign(new Error('the chat\'s message store cannot be reached; try again in a moment', { cause }), {
      statusCode: 503,
      code: 'CHAT_STORE_UNAVAILABLE'
    })
  }
}
