// A minimal HTTP/1.1 client for the subscribers: keep-alive connections, one request at a time on
// each, responses with Content-Length only. undici costs the driver more CPU per request than the
// floor server spends answering it, and with two cores the driver would then be what the fan-out
// times measure. This costs a small fraction of it, and the same for every contender.
import { connect, type Socket } from 'node:net'

interface Exchange {
  resolve: (body: string) => void
  reject: (error: Error) => void
  what: string
}

const headerEnd = Buffer.from('\r\n\r\n')

class Connection {
  readonly #socket: Socket
  #buffer: Buffer | undefined
  #exchange: Exchange | undefined
  #closed: Error | undefined

  constructor (host: string, port: number, localAddress: string) {
    this.#socket = connect({ host, port, localAddress, noDelay: true })
    this.#socket.on('data', chunk => this.#onData(chunk))
    const onEnd = (error?: Error): void => {
      this.#closed = error ?? new Error('the server closed the connection')
      this.#exchange?.reject(this.#closed)
      this.#exchange = undefined
    }
    this.#socket.on('error', onEnd)
    this.#socket.on('close', () => onEnd())
  }

  get busy (): boolean {
    return this.#exchange !== undefined
  }

  get closed (): boolean {
    return this.#closed !== undefined
  }

  send (head: string, body: string | undefined, what: string): Promise<string> {
    if (this.#closed !== undefined) return Promise.reject(this.#closed)
    return new Promise((resolve, reject) => {
      this.#exchange = { resolve, reject, what }
      this.#socket.write(body === undefined ? head : head + body)
    })
  }

  #onData (chunk: Buffer): void {
    const buffer = this.#buffer === undefined ? chunk : Buffer.concat([this.#buffer, chunk])
    this.#buffer = buffer
    const end = buffer.indexOf(headerEnd)
    if (end === -1) return
    const exchange = this.#exchange
    const head = buffer.toString('latin1', 0, end)
    const length = /\r\ncontent-length: *(\d+)/i.exec(head)?.[1]
    if (exchange === undefined || length === undefined) {
      this.#socket.destroy(new Error(`${exchange?.what ?? 'no request'}: unexpected response ${head.slice(0, 200)}`))
      return
    }
    const bodyEnd = end + 4 + Number(length)
    if (buffer.length < bodyEnd) return
    if (buffer.length > bodyEnd) {
      this.#socket.destroy(new Error(`${exchange.what}: more bytes than Content-Length`))
      return
    }
    this.#buffer = undefined
    this.#exchange = undefined
    const body = buffer.toString('utf8', end + 4, bodyEnd)
    const status = head.slice(9, 12)
    if (status === '200') exchange.resolve(body)
    else exchange.reject(new Error(`${exchange.what}: ${status} ${body.slice(0, 200)}`))
  }
}

/**
 * A request whose response stays open (Server-Sent Events), on a connection of its own: the body
 * is decoded from HTTP/1.1 chunked framing and handed on as text, chunk by chunk.
 */
class StreamConnection {
  readonly #socket: Socket
  #head = true
  #pending: Buffer | undefined
  /** Bytes of the current chunk's data still to come, or -1 when a chunk size line comes next. */
  #remaining = -1

  constructor (host: string, port: number, localAddress: string, head: string, onText: (text: string) => void, onOpen: (error?: Error) => void, onEnd: (error: Error) => void) {
    this.#socket = connect({ host, port, localAddress, noDelay: true })
    this.#socket.on('data', chunk => {
      let buffer = this.#pending === undefined ? chunk : Buffer.concat([this.#pending, chunk])
      this.#pending = undefined
      if (this.#head) {
        const end = buffer.indexOf(headerEnd)
        if (end === -1) {
          this.#pending = buffer
          return
        }
        const status = buffer.toString('latin1', 9, 12)
        this.#head = false
        if (status !== '200') {
          onOpen(new Error(`GET stream: ${status} ${buffer.toString('utf8', end + 4, end + 204)}`))
          this.#socket.destroy()
          return
        }
        onOpen()
        buffer = buffer.subarray(end + 4)
      }
      this.#decode(buffer, onText)
    })
    this.#socket.on('error', error => { if (this.#head) onOpen(error) })
    this.#socket.on('close', () => { if (!this.#head) onEnd(new Error('the server ended the stream')) })
    this.#socket.write(head)
  }

  #decode (buffer: Buffer, onText: (text: string) => void): void {
    let at = 0
    let text = ''
    while (at < buffer.length) {
      if (this.#remaining === -1) {
        const lineEnd = buffer.indexOf('\r\n', at)
        if (lineEnd === -1) break
        this.#remaining = parseInt(buffer.toString('latin1', at, lineEnd), 16) + 2 // the data and its CRLF
        at = lineEnd + 2
        continue
      }
      const take = Math.min(this.#remaining, buffer.length - at)
      // The last two bytes of a chunk are its CRLF, not data.
      const data = Math.min(take, this.#remaining - 2)
      if (data > 0) text += buffer.toString('utf8', at, at + data)
      this.#remaining -= take
      at += take
      if (this.#remaining === 0) this.#remaining = -1
    }
    if (at < buffer.length) this.#pending = buffer.subarray(at)
    if (text !== '') onText(text)
  }
}

/** One subscriber's connections to one server: a request goes on an idle one, or on a new one. */
export class Http {
  readonly #host: string
  readonly #port: number
  readonly #localAddress: string
  readonly #connections: Connection[] = []

  constructor (origin: string, localAddress: string) {
    const url = new URL(origin)
    this.#host = url.hostname
    this.#port = Number(url.port)
    this.#localAddress = localAddress
  }

  get (path: string): Promise<string> {
    return this.#connection().send(`GET ${path} HTTP/1.1\r\nhost: ${this.#host}\r\n\r\n`, undefined, `GET ${path}`)
  }

  get origin (): string {
    return `http://${this.#host}:${this.#port}`
  }

  /**
   * GET with Accept: text/event-stream; resolves once the stream is open, then hands on its text.
   * `onEnd` hears of a stream that the server ends.
   */
  stream (path: string, onText: (text: string) => void, onEnd: (error: Error) => void): Promise<void> {
    return new Promise((resolve, reject) => {
      // eslint-disable-next-line no-new
      new StreamConnection(this.#host, this.#port, this.#localAddress, `GET ${path} HTTP/1.1\r\nhost: ${this.#host}\r\naccept: text/event-stream\r\n\r\n`, onText, error => {
        if (error === undefined) resolve()
        else reject(error)
      }, onEnd)
    })
  }

  post (path: string, body: string, contentType: string): Promise<string> {
    const head = `POST ${path} HTTP/1.1\r\nhost: ${this.#host}\r\ncontent-type: ${contentType}\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n`
    return this.#connection().send(head, body, `POST ${path}`)
  }

  #connection (): Connection {
    for (let i = this.#connections.length - 1; i >= 0; i--) {
      const connection = this.#connections[i] as Connection
      if (connection.closed) this.#connections.splice(i, 1)
      else if (!connection.busy) return connection
    }
    const connection = new Connection(this.#host, this.#port, this.#localAddress)
    this.#connections.push(connection)
    return connection
  }
}
