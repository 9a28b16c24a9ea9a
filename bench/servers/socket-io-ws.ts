// socket.io over its WebSocket transport only, what its users get by default once the upgrade is
// done: a subscriber joins a room named after its channel; a publish is a broadcast to that room.
// Heartbeats are set longer than any phase of a run, as for the polling contender.
import { createServer } from 'node:http'
import { Server } from 'socket.io'
import { pollTimeoutSeconds, serveContender } from './common.js'

const server = createServer()
const io = new Server(server, {
  transports: ['websocket'],
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
