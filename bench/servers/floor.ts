// The floor: the least work Node.js can do for the job. A bare node:http server parks each
// long-poll in memory and answers it when its channel gets a publish, in the design of
// latest-only.ts: no framework, no history.
import { createServer, type ServerResponse } from 'node:http'
import { serveContender } from './common.js'
import { LatestOnly } from './latest-only.js'

const polls = new LatestOnly<ServerResponse>({
  answer (response, body) {
    response.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
    response.end(body)
  },
  onHangUp: (response, listener) => { response.once('close', listener) }
})

const server = createServer((request, response) => {
  const url = request.url ?? ''
  const query = new URLSearchParams(url.slice(url.indexOf('?') + 1))
  const channel = query.get('ch')
  if (!url.startsWith('/sub?') || channel === null) {
    response.writeHead(404).end()
    return
  }
  polls.subscribe(response, channel, query.get('after') ?? undefined)
})

await serveContender({
  server,
  publish: (channel, message) => { polls.publish(channel, message) }
})
