// A small Server-Sent Events client for the tests, over node:http (a real socket): it parses the
// stream as the EventSource specification does (fields, comments, the last event id) and keeps
// everything it received for the test to look at.
import http from 'node:http'
import { subscribeQuery } from './helpers.js'

/** One dispatched SSE message, or a comment line (`comment` set, the rest empty). */
export interface SseMessage {
  /** The last event id once this message was parsed (EventSource's lastEventId). */
  lastEventId: string
  event: string
  data: string
  /** The id field of this very message, if it had one. */
  id: string | undefined
  retry: number | undefined
}

/** Parses SSE text as it arrives, chunk by chunk. */
export class SseParser {
  lastEventId = ''
  readonly messages: SseMessage[] = []
  readonly comments: string[] = []
  #buffer = ''
  #event = ''
  #data: string[] = []
  #id: string | undefined
  #retry: number | undefined
  #fields = 0

  push (chunk: string): void {
    this.#buffer += chunk
    let end: number
    while ((end = this.#buffer.search(/\r\n|\r|\n/)) !== -1) {
      const line = this.#buffer.slice(0, end)
      const newline = this.#buffer.startsWith('\r\n', end) ? 2 : 1
      this.#buffer = this.#buffer.slice(end + newline)
      this.#line(line)
    }
  }

  #line (line: string): void {
    if (line === '') {
      if (this.#fields > 0) {
        this.messages.push({ lastEventId: this.lastEventId, event: this.#event === '' ? 'message' : this.#event, data: this.#data.join('\n'), id: this.#id, retry: this.#retry })
      }
      this.#event = ''
      this.#data = []
      this.#id = undefined
      this.#retry = undefined
      this.#fields = 0
      return
    }
    if (line.startsWith(':')) {
      this.comments.push(line.slice(1))
      return
    }
    const colon = line.indexOf(':')
    const field = colon === -1 ? line : line.slice(0, colon)
    let value = colon === -1 ? '' : line.slice(colon + 1)
    if (value.startsWith(' ')) value = value.slice(1)
    this.#fields++
    if (field === 'event') this.#event = value
    else if (field === 'data') this.#data.push(value)
    else if (field === 'id' && !value.includes('\0')) {
      this.#id = value
      this.lastEventId = value
    } else if (field === 'retry' && /^\d+$/.test(value)) this.#retry = Number(value)
  }
}

export interface OpenedStream {
  status: number
  headers: http.IncomingHttpHeaders
  /** The body as JSON when the answer is not a stream (an error). */
  body: () => Promise<any>
  parser: SseParser
  /** The events (default type) as { channel, id, data }. */
  events: () => Array<{ channel: string, id: string, data: unknown }>
  /** The channels of each gap message, in order. */
  gaps: () => string[][]
  /** Resolves once `condition` holds of what was received, or rejects when the stream ends first or `ms` pass. */
  until: (condition: (parser: SseParser) => boolean, ms?: number) => Promise<void>
  /** Resolves when the server ends the stream. */
  ended: Promise<void>
  close: () => void
  request: http.ClientRequest
  response: http.IncomingMessage
}

export interface StreamRequest {
  lastEventId?: string
  prefix?: string
  headers?: Record<string, string>
  agent?: http.Agent
}

/** GET {prefix}/subscribe with Accept: text/event-stream. */
export async function openStream (origin: string, cursors: Record<string, string>, { lastEventId, prefix = '/comet', headers = {}, agent }: StreamRequest = {}): Promise<OpenedStream> {
  const url = `${origin}${prefix}/subscribe?${subscribeQuery(cursors)}`
  const requestHeaders: Record<string, string> = { accept: 'text/event-stream', ...headers }
  if (lastEventId !== undefined) requestHeaders['last-event-id'] = lastEventId
  return await new Promise((resolve, reject) => {
    const request = http.get(url, { headers: requestHeaders, ...(agent === undefined ? {} : { agent }) }, response => {
      response.setEncoding('utf8')
      const parser = new SseParser()
      const waiters = new Set<() => void>()
      let raw = ''
      let isEnded = false
      const ended = new Promise<void>(resolve => {
        const end = (): void => {
          isEnded = true
          resolve()
          for (const waiter of waiters) waiter()
        }
        response.on('end', end)
        response.on('close', end)
        response.on('error', end)
      })
      response.on('data', (chunk: string) => {
        raw += chunk
        parser.push(chunk)
        for (const waiter of waiters) waiter()
      })
      const events = (): Array<{ channel: string, id: string, data: unknown }> => parser.messages.filter(m => m.event === 'message' && m.data !== '').map(m => JSON.parse(m.data))
      resolve({
        status: response.statusCode ?? 0,
        headers: response.headers,
        body: async () => { await ended; return JSON.parse(raw) },
        parser,
        events,
        gaps: () => parser.messages.filter(m => m.event === 'gap').map(m => (JSON.parse(m.data) as { channels: string[] }).channels),
        until: async (condition, ms = 5000) => await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => { waiters.delete(check); reject(new Error(`the stream did not get there within ${ms} ms: ${JSON.stringify(parser.messages)}`)) }, ms)
          const check = (): void => {
            if (condition(parser)) {
              clearTimeout(timer)
              waiters.delete(check)
              resolve()
            } else if (isEnded) {
              clearTimeout(timer)
              waiters.delete(check)
              reject(new Error(`the stream ended first: ${JSON.stringify(parser.messages)}`))
            }
          }
          waiters.add(check)
          check()
        }),
        ended,
        close: () => { request.destroy() },
        request,
        response
      })
    })
    request.on('error', reject)
  })
}
