// socket.io on one transport: its HTTP long-polling (Engine.IO v4 polling) by default, or with the
// argument `websocket` its WebSocket transport alone, what its users get once the upgrade is done.
// A subscriber joins a room named after its channel; a publish is a broadcast to that room. Heartbeats are set
// longer than any phase of a run, as the other contenders' poll timeouts are. With REDIS_URL (the
// harness's own redis-server), on its Redis adapter (@socket.io/redis-adapter, ioredis clients):
// a broadcast is published on Redis, and every process's adapter delivers it to its own sockets.
import { createServer } from 'node:http'
import { Server, type ServerOptions } from 'socket.io'
import { pollTimeoutSeconds, serveContender } from './common.js'

const url = process.env.REDIS_URL
let adapter: Partial<Pick<ServerOptions, 'adapter'>> = {}
if (url !== undefined) {
  const [{ createAdapter }, { Redis }] = await Promise.all([import('@socket.io/redis-adapter'), import('ioredis')])
  const publisher = new Redis(url)
  const subscriber = publisher.duplicate()
  // The adapter logs nothing by itself; a lost connection is what the restart scenario measures.
  for (const client of [publisher, subscriber]) client.on('error', () => {})
  adapter = { adapter: createAdapter(publisher, subscriber) }
}

const server = createServer()
const io = new Server(server, {
  transports: [process.argv[2] === 'websocket' ? 'websocket' : 'polling'],
  allowUpgrades: false,
  serveClient: false,
  pingInterval: pollTimeoutSeconds * 1000,
  pingTimeout: pollTimeoutSeconds * 1000,
  ...adapter
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
