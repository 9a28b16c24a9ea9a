// Not a contender: a bare Fastify route speaking exactly fastify-comet's subscribe protocol, the
// bound of what the plugin can cost in Fastify for this protocol. Plain Fastify as in comet.ts, no
// plugin, no schema, no hook; the channel name and cursor are checked against the plugin's own
// patterns (400 otherwise), and the reply has the plugin's shape and headers. Its history is the
// latest event of each channel only: a poll whose cursor is older gets it at once, with a gap if it
// missed more; else it parks until the next publish or its timeout. One channel per poll: the
// driver subscribes to one.
//
//   GET /comet/subscribe?subscribed[<channel>]=<cursor>[&wait=0|1]
//     → {"s":0,"p":{"<channel>":"<cursor>"}} on wait=0 with nothing new, or on timeout;
//     → {"s":1,"k":{…},"m":{"<channel>":[{"id":"<cursor>","data":<message>}]},"p":{…}[,"gap":["<channel>"]]}
import Fastify, { type FastifyReply } from 'fastify'
import { cursorAllHeld, cursorFromNow, cursorPattern, isChannelName, subscribedKeyPattern } from '../../lib/protocol/poll.js'
import { pollTimeoutSeconds, serveContender } from './common.js'

const subscribedKeyRegExp = new RegExp(subscribedKeyPattern)
const cursorRegExp = new RegExp(cursorPattern)
const decimal = /^[0-9]{1,15}$/
const cometWait = String(pollTimeoutSeconds)

/** A channel's latest event, its number and the one before it, and its replies built once. */
interface Latest { readonly number: number, readonly previous: number, readonly reply: string, readonly replyWithGap: string }

/**
 * Cursors are numbers from one counter for all channels, so that a channel with no event yet has a
 * cursor at "now" too. It starts at 1: "0" is a client's way to say "from now".
 */
let counter = 1
const latest = new Map<string, Latest>()
const parked = new Map<string, Set<FastifyReply>>()

function publish (channel: string, message: unknown): void {
  const number = ++counter
  const cursor = `"${channel}":"${number}"`
  const news = `{"s":1,"k":{${cursor}},"m":{"${channel}":[{"id":"${number}","data":${JSON.stringify(message)}}]},"p":{${cursor}}`
  const event = { number, previous: latest.get(channel)?.number ?? 0, reply: `${news}}`, replyWithGap: `${news},"gap":["${channel}"]}` }
  latest.set(channel, event)
  const waiting = parked.get(channel)
  if (waiting === undefined) return
  parked.delete(channel)
  // Each answer's hang-up listener clears its timer and leaves the set, no longer the channel's.
  for (const reply of waiting) reply.send(event.reply)
}

function refuse (reply: FastifyReply, message: string): void {
  reply.code(400).type('application/json; charset=utf-8').send(JSON.stringify({ statusCode: 400, code: 'FST_COMET_BAD_SUBSCRIBE', error: 'Bad Request', message }))
}

function subscribe (query: Readonly<Record<string, string | string[] | undefined>>, reply: FastifyReply): void {
  let channel: string | undefined
  let cursor = ''
  for (const key in query) {
    // Other parameters are let through, as the plugin's schema does.
    if (!key.startsWith('subscribed[')) continue
    const match = subscribedKeyRegExp.exec(key)
    const value = query[key]
    if (match === null || typeof value !== 'string') return refuse(reply, `bad subscribe parameter ${key}`)
    if (channel !== undefined) return refuse(reply, 'one channel per poll only here')
    channel = match[1] as string
    cursor = value
  }
  const wait = query.wait
  if (wait !== undefined && wait !== '0' && wait !== '1') return refuse(reply, 'wait is 0 or 1')
  if (channel === undefined) return refuse(reply, 'no channel: subscribe with subscribed[<channel>]=<cursor>')
  if (!isChannelName(channel)) return refuse(reply, `bad channel name ${channel}`)
  if (!cursorRegExp.test(cursor)) return refuse(reply, `bad cursor ${cursor}`)
  reply.type('application/json; charset=utf-8').header('comet-wait', cometWait)

  const last = latest.get(channel)
  // Where the poll reads from, and whether the client missed what it cannot be told about.
  let after: number
  let unknownCursor = false
  if (cursorFromNow.includes(cursor)) after = counter
  else if (cursor === cursorAllHeld) after = 0
  else if (decimal.test(cursor) && Number(cursor) <= counter) after = Number(cursor)
  else {
    // A cursor this process never gave (another process's, a restart's): read from the oldest held.
    after = 0
    unknownCursor = true
  }
  if (last !== undefined && last.number > after) {
    reply.send(unknownCursor || last.previous > after ? last.replyWithGap : last.reply)
    return
  }
  const timeoutReply = `{"s":0,"p":{"${channel}":"${after === 0 ? counter : after}"}}`
  if (wait === '0') {
    reply.send(timeoutReply)
    return
  }
  let waiting = parked.get(channel)
  if (waiting === undefined) parked.set(channel, waiting = new Set())
  const set = waiting
  const timer = setTimeout(() => {
    set.delete(reply)
    reply.send(timeoutReply)
  }, pollTimeoutSeconds * 1000)
  set.add(reply)
  reply.raw.on('close', () => {
    clearTimeout(timer)
    set.delete(reply)
  })
}

const app = Fastify({ keepAliveTimeout: 600_000, requestTimeout: 0, connectionTimeout: 0 })
app.get<{ Querystring: Record<string, string | string[] | undefined> }>('/comet/subscribe', (request, reply) => {
  // Never from a cache, errors included, as the plugin's onRequest hook makes sure.
  reply.header('cache-control', 'no-store')
  subscribe(request.query, reply)
  // Nothing returned: the reply is sent later (see fastify-floor.ts).
})

await app.ready()
await serveContender({
  server: app.server,
  publish: (channel, message) => { publish(channel, message) }
})
