// socket.io on its Redis adapter (@socket.io/redis-adapter, ioredis clients), restricted to HTTP
// long-polling as in socket-io.ts. A broadcast is published on Redis and every process's adapter
// delivers it to its own sockets in the room. The harness names its redis-server in REDIS_URL.
import { createServer } from 'node:http'
import { createAdapter } from '@socket.io/redis-adapter'
import { Redis } from 'ioredis'
import { Server } from 'socket.io'
import { pollTimeoutSeconds, serveContender } from './common.js'

const url = process.env.REDIS_URL
if (url === undefined) throw new Error('socket-io-redis.ts needs REDIS_URL')
const publisher = new Redis(url)
const subscriber = publisher.duplicate()
// The adapter logs nothing by itself; a lost connection is what the restart scenario measures.
for (const client of [publisher, subscriber]) client.on('error', () => {})

const server = createServer()
const io = new Server(server, {
  transports: ['polling'],
  allowUpgrades: false,
  serveClient: false,
  pingInterval: pollTimeoutSeconds * 1000,
  pingTimeout: pollTimeoutSeconds * 1000,
  adapter: createAdapter(publisher, subscriber)
})
io.on('connection', socket => {
  socket.on('subscribe', (channel: unknown, ack: unknown) => {
    if (typeof channel === 'string') void socket.join(channel)
    if (typeof ack === 'function') ack()
  })
})

await serveContender({
  server,
  publish: (channel, message) => { io.to(channel).emit('m', message) }
})
