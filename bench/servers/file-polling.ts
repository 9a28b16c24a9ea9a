// The classic design that fastify-comet replaces (the PHP recipe of the README): a publish writes
// the channel's file; every waiting request looks at the file's modification time every 10 ms and
// answers when it is newer than the client's cursor. The file holds only the latest message, so a
// client that was away for two publishes misses one: that is the design, and the driver counts it.
//
//   GET /sub?ch=<channel>[&after=<mtime>]  →  {"c":<mtime>,"d":<message>}, or {"c":<mtime>} on timeout
import { mkdtempSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs'
import { createServer, type ServerResponse } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pollTimeoutSeconds, serveContender } from './common.js'

const checkEveryMs = 10
const directory = mkdtempSync(join(tmpdir(), 'comet-bench-files-'))
process.once('exit', () => rmSync(directory, { recursive: true, force: true }))

function modified (file: string): number {
  return statSync(file, { throwIfNoEntry: false })?.mtimeMs ?? 0
}

const server = createServer((request, response) => {
  const url = request.url ?? ''
  const query = new URLSearchParams(url.slice(url.indexOf('?') + 1))
  const channel = query.get('ch')
  if (!url.startsWith('/sub?') || channel === null || !/^[\w.-]+$/.test(channel)) {
    response.writeHead(404).end()
    return
  }
  const file = join(directory, channel)
  const afterParam = query.get('after')
  const after = afterParam === null ? modified(file) : Number(afterParam)
  const started = Date.now()
  const check = (): void => {
    const mtime = modified(file)
    if (mtime > after) {
      stop()
      send(response, `{"c":${mtime},"d":${readFileSync(file, 'utf8')}}`)
    } else if (Date.now() - started >= pollTimeoutSeconds * 1000) {
      stop()
      send(response, `{"c":${after}}`)
    }
  }
  const interval = setInterval(check, checkEveryMs)
  const stop = (): void => clearInterval(interval)
  response.once('close', stop)
  check()
})

function send (response: ServerResponse, body: string): void {
  response.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
  response.end(body)
}

// The file system's clock is coarse (a few milliseconds), so two quick writes could share a
// modification time: each write sets it explicitly, a millisecond past the last one at least.
const lastModified = new Map<string, number>()

await serveContender({
  server,
  publish (channel, message) {
    const file = join(directory, channel)
    writeFileSync(file, JSON.stringify(message))
    const seconds = Math.max(Date.now(), (lastModified.get(channel) ?? 0) + 1) / 1000
    lastModified.set(channel, seconds * 1000)
    utimesSync(file, seconds, seconds)
  }
})
