// The streaming floor: the least work Node.js can do to stream. A bare node:http server holds each
// subscriber's response open as Server-Sent Events and writes one frame to every held response of
// a channel on publish: no framework, no history, no cursors.
import { createServer, type ServerResponse } from 'node:http'
import { serveContender } from './common.js'

const streams = new Map<string, Set<ServerResponse>>()
let sent = 0

const server = createServer((request, response) => {
  const url = request.url ?? ''
  const channel = new URLSearchParams(url.slice(url.indexOf('?') + 1)).get('ch')
  if (!url.startsWith('/sse?') || channel === null) {
    response.writeHead(404).end()
    return
  }
  response.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' })
  response.write(': open\n\n')
  let held = streams.get(channel)
  if (held === undefined) streams.set(channel, held = new Set())
  const set = held
  set.add(response)
  response.once('close', () => { set.delete(response) })
})

await serveContender({
  server,
  publish: (channel, message) => {
    const held = streams.get(channel)
    if (held === undefined) return
    const frame = `id: ${++sent}\ndata: ${JSON.stringify(message)}\n\n`
    for (const response of held) response.write(frame)
  }
})
