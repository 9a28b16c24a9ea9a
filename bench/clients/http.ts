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
