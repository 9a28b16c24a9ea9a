// The floor: the least work Node.js can do for the job. A bare node:http server parks each
// long-poll in memory and answers it when its channel gets a publish. No framework, no history:
// per channel it keeps only the latest message, numbered, so a poll that comes back with the
// number it was given is answered at once if it missed exactly that one, and the driver sees a
// gap if it missed more. Each parked poll has its own timeout timer, as any long-poll needs.
//
//   GET /sub?ch=<channel>[&after=<n>]  →  {"c":<n>,"d":<message>}, or {"c":<n>} on timeout
import { createServer, type ServerResponse } from 'node:http'
import { pollTimeoutSeconds, serveContender } from './common.js'

interface Latest { readonly number: number, readonly reply: string }

const parked = new Map<string, Set<ServerResponse>>()
const latest = new Map<string, Latest>()

const server = createServer((request, response) => {
  const url = request.url ?? ''
  const query = new URLSearchParams(url.slice(url.indexOf('?') + 1))
  const channel = query.get('ch')
  if (!url.startsWith('/sub?') || channel === null) {
    response.writeHead(404).end()
    return
  }
  const after = query.get('after')
  const last = latest.get(channel)
  if (after !== null && last !== undefined && last.number > Number(after)) {
    send(response, last.reply)
    return
  }
  let waiting = parked.get(channel)
  if (waiting === undefined) parked.set(channel, waiting = new Set())
  const set = waiting
  const timer = setTimeout(() => {
    set.delete(response)
    send(response, `{"c":${after ?? last?.number ?? 0}}`)
  }, pollTimeoutSeconds * 1000)
  set.add(response)
  response.once('close', () => {
    clearTimeout(timer)
    set.delete(response)
  })
})

function send (response: ServerResponse, body: string): void {
  response.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
  response.end(body)
}

await serveContender({
  server,
  publish (channel, message) {
    const number = (latest.get(channel)?.number ?? 0) + 1
    const reply = `{"c":${number},"d":${JSON.stringify(message)}}`
    latest.set(channel, { number, reply })
    const waiting = parked.get(channel)
    if (waiting === undefined) return
    parked.delete(channel)
    const headers = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(reply) }
    // Each response's 'close' clears its timer and leaves the set, which is no longer the channel's.
    for (const response of waiting) response.writeHead(200, headers).end(reply)
  }
})
