// socket.io restricted to its HTTP long-polling transport (Engine.IO v4 polling). A subscriber
// joins a room named after its channel; a publish is a broadcast to that room. Heartbeats are set
// longer than any phase of a run, as the other contenders' poll timeouts are.
import { createServer } from 'node:http'
import { Server } from 'socket.io'
import { pollTimeoutSeconds, serveContender } from './common.js'

const server = createServer()
const io = new Server(server, {
  transports: ['polling'],
  allowUpgrades: false,
  serveClient: false,
  pingInterval: pollTimeoutSeconds * 1000,
  pingTimeout: pollTimeoutSeconds * 1000
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
