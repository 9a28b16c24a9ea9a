// How the driver subscribes to each contender: its native wire protocol, spoken directly over the
// small HTTP client of http.ts, so that the client side costs the same little for everyone. Each
// subscriber polls one channel until the process ends.
import { WebSocket } from 'undici'
import type { Http } from './http.js'

/** Called with each message a subscriber receives. */
export type OnMessage = (seq: number, t: number) => void

/**
 * Starts a subscriber. The returned promise resolves when the subscriber is set up and about to
 * send its first long-poll; the polling goes on in the background. `onError` gets an error that
 * stopped a subscriber.
 */
export type Subscribe = (http: Http, channel: string, onMessage: OnMessage, onError: (error: unknown) => void, events: SubscriberEvents) => Promise<void>

/** What a subscriber reports besides messages, where its protocol has it. */
export interface SubscriberEvents {
  /** The server said events were lost for this subscriber (fastify-comet's `gap`). */
  onGap: () => void
  /** A poll was refused with 503 (the server's Redis is down) and will be sent again. */
  onRetry: () => void
}

interface BenchMessage { seq: number, t: number }

/** Runs `poll` forever in the background, after `ready` resolved; reports what stops it. */
function pollForever (poll: () => Promise<void>, onError: (error: unknown) => void): void {
  void (async () => {
    for (;;) await poll()
  })().catch(onError)
}

// fastify-comet: learn the cursor at "now" with wait=0, then long-poll with the cursor of `p`. A
// reported gap comes before the reply's events; a 503 (Redis down) is asked again after a while,
// spread so that the subscribers do not all come back at once, as the plugin's client does.
const comet: Subscribe = async (http, channel, onMessage, onError, { onGap, onRetry }) => {
  interface Reply { s: 0 | 1, m?: Record<string, Array<{ id: string, data: BenchMessage }>>, p: Record<string, string>, gap?: string[] }
  const first = JSON.parse(await http.get(`/comet/subscribe?subscribed[${channel}]=0&wait=0`)) as Reply
  let cursor = first.p[channel] as string
  pollForever(async () => {
    let body: string
    try {
      body = await http.get(`/comet/subscribe?subscribed[${channel}]=${encodeURIComponent(cursor)}`)
    } catch (error) {
      if (!/: 503 /.test((error as Error).message)) throw error
      onRetry()
      await new Promise(resolve => setTimeout(resolve, 250 + Math.random() * 500))
      return
    }
    const reply = JSON.parse(body) as Reply
    if (reply.gap?.includes(channel) === true) onGap()
    for (const event of reply.m?.[channel] ?? []) onMessage(event.data.seq, event.data.t)
    cursor = reply.p[channel] as string
  }, onError)
}

// The floor and file polling share a trivial protocol: the first poll has no cursor ("from now").
const latestOnly: Subscribe = async (http, channel, onMessage, onError) => {
  let after = ''
  pollForever(async () => {
    const reply = JSON.parse(await http.get(`/sub?ch=${channel}${after}`)) as { c: number, d?: BenchMessage }
    if (reply.d !== undefined) onMessage(reply.d.seq, reply.d.t)
    after = `&after=${reply.c}`
  }, onError)
}

// Faye: Bayeux over HTTP POST, handshake asking for long-polling only, subscribe, then a
// /meta/connect loop whose replies carry the messages.
const faye: Subscribe = async (http, channel, onMessage, onError) => {
  interface BayeuxMessage { channel: string, successful?: boolean, clientId?: string, error?: string, data?: BenchMessage }
  let id = 0
  const send = async (message: Record<string, unknown>): Promise<BayeuxMessage[]> => {
    return JSON.parse(await http.post('/faye', JSON.stringify([{ ...message, id: String(++id) }]), 'application/json')) as BayeuxMessage[]
  }
  const [handshake] = await send({ channel: '/meta/handshake', version: '1.0', supportedConnectionTypes: ['long-polling'] })
  if (handshake?.successful !== true || handshake.clientId === undefined) throw new Error(`faye handshake failed: ${JSON.stringify(handshake)}`)
  const clientId = handshake.clientId
  const subscription = `/c/${channel}`
  const [subscribed] = await send({ channel: '/meta/subscribe', clientId, subscription })
  if (subscribed?.successful !== true) throw new Error(`faye subscribe failed: ${JSON.stringify(subscribed)}`)
  pollForever(async () => {
    const messages = await send({ channel: '/meta/connect', clientId, connectionType: 'long-polling' })
    for (const message of messages) {
      if (message.channel === subscription && message.data !== undefined) onMessage(message.data.seq, message.data.t)
      else if (message.channel === '/meta/connect' && message.successful !== true) throw new Error(`faye connect failed: ${JSON.stringify(message)}`)
    }
  }, onError)
}

// socket.io: Engine.IO v4 polling. Open, connect the main namespace, emit "subscribe" with an
// acknowledgement, then long-poll; packets in one reply are separated by \x1e, pings are answered.
const socketIo: Subscribe = async (http, channel, onMessage, onError) => {
  const base = '/socket.io/?EIO=4&transport=polling'
  const open = await http.get(base)
  if (!open.startsWith('0')) throw new Error(`socket.io open failed: ${open}`)
  const path = `${base}&sid=${(JSON.parse(open.slice(1)) as { sid: string }).sid}`
  let acknowledged = false
  const receive = async (): Promise<void> => {
    for (const packet of (await http.get(path)).split('\x1e')) {
      if (packet.startsWith('42')) {
        const [, message] = JSON.parse(packet.slice(2)) as [string, BenchMessage]
        onMessage(message.seq, message.t)
      } else if (packet === '430[]') {
        acknowledged = true
      } else if (packet === '2') {
        await http.post(path, '3', 'text/plain;charset=UTF-8')
      } else if (packet === '1' || packet.startsWith('44')) {
        throw new Error(`socket.io closed the session: ${packet}`)
      }
    }
  }
  await http.post(path, '40', 'text/plain;charset=UTF-8')
  await receive() // 40{"sid":…}: the namespace is connected
  await http.post(path, `420${JSON.stringify(['subscribe', channel])}`, 'text/plain;charset=UTF-8')
  for (let tries = 0; !acknowledged; tries++) {
    if (tries === 10) throw new Error('socket.io: no acknowledgement of the subscribe')
    await receive()
  }
  pollForever(receive, onError)
}

/** Splits SSE text into messages and calls `onMessage` with each one's event type and data. */
function sseMessages (onMessage: (event: string, data: string) => void): (text: string) => void {
  let pending = ''
  return text => {
    pending += text
    let end: number
    while ((end = pending.indexOf('\n\n')) !== -1) {
      let event = 'message'
      let data = ''
      for (const line of pending.slice(0, end).split('\n')) {
        if (line.startsWith('data: ')) data = line.slice(6)
        else if (line.startsWith('event: ')) event = line.slice(7)
      }
      pending = pending.slice(end + 2)
      if (data !== '') onMessage(event, data)
    }
  }
}

// fastify-comet streaming: one stream from "now"; each message carries one event, a gap its own.
const cometStream: Subscribe = async (http, channel, onMessage, onError, { onGap }) => {
  await http.stream(`/comet/subscribe?subscribed[${channel}]=0`, sseMessages((event, data) => {
    if (event === 'gap') {
      onGap()
      return
    }
    const { data: message } = JSON.parse(data) as { data: BenchMessage }
    onMessage(message.seq, message.t)
  }), onError)
}

// The streaming floor: a frame's data is the message itself.
const floorStream: Subscribe = async (http, channel, onMessage, onError) => {
  await http.stream(`/sse?ch=${channel}`, sseMessages((_event, data) => {
    const message = JSON.parse(data) as BenchMessage
    onMessage(message.seq, message.t)
  }), onError)
}

// socket.io over WebSocket (Engine.IO v4 packets): open, connect the main namespace, emit
// "subscribe" with an acknowledgement, then receive; pings are answered.
const socketIoWebSocket: Subscribe = async (http, channel, onMessage, onError) => {
  const socket = new WebSocket(`${http.origin.replace(/^http/, 'ws')}/socket.io/?EIO=4&transport=websocket`)
  await new Promise<void>((resolve, reject) => {
    socket.onerror = () => reject(new Error('socket.io WebSocket failed'))
    socket.onclose = () => onError(new Error('socket.io closed the WebSocket'))
    socket.onmessage = ({ data }) => {
      const packet = String(data)
      if (packet.startsWith('42')) {
        const [, message] = JSON.parse(packet.slice(2)) as [string, BenchMessage]
        onMessage(message.seq, message.t)
      } else if (packet === '2') {
        socket.send('3')
      } else if (packet.startsWith('0{')) {
        socket.send('40')
      } else if (packet.startsWith('40')) {
        socket.send(`420${JSON.stringify(['subscribe', channel])}`)
      } else if (packet === '430[]') {
        resolve()
      }
    }
  })
}

export const protocols: Record<string, Subscribe> = {
  floor: latestOnly,
  'fastify-floor': latestOnly,
  'protocol-floor': comet,
  'fastify-comet': comet,
  'fastify-comet-metrics': comet,
  'fastify-comet-redis': comet,
  'fastify-comet-redis-x2': comet,
  'file-polling': latestOnly,
  faye,
  'socket.io': socketIo,
  'socket.io-redis': socketIo,
  'socket.io-redis-x2': socketIo,
  'sse-floor': floorStream,
  'fastify-comet-sse': cometStream,
  'fastify-comet-redis-sse': cometStream,
  'socket.io-ws': socketIoWebSocket
}
