// Where a request enters: the subscribe and publish routes. They check what HTTP brings (schemas,
// limits, authorization) and hand over to the bus.
import type { FastifyInstance, FastifyReply, FastifyRequest, FastifySchemaValidationError } from 'fastify'
import type { CometBus } from '../bus/bus.js'
import type { PollAnswerer } from '../bus/pending-poll.js'
import { errors, type RetryAfterHeaders } from '../errors.js'
import type { CometMetrics } from '../metrics.js'
import type { CometAuthorizer, ResolvedCometOptions } from '../options.js'
import type { Presence } from '../presence/presence.js'
import { presenceRoute } from '../presence/route.js'
import { idempotencyKeyOfHeader, parseSubscription } from '../protocol/poll.js'
import { strictUtf8Bodies } from './body-parsers.js'
import { cancelOnHangUp } from './hang-up.js'
import { StreamHub, wantsStream } from './stream.js'
import { quieterLogLevel, routeSchema } from './route-options.js'
import { publishInPathSchema, publishInQuerySchema, subscribeSchema } from './schemas.js'

export interface CometRoutesOptions {
  bus: CometBus
  metrics: CometMetrics
  options: ResolvedCometOptions
  /** Undefined when presence is off. */
  presence?: Presence | undefined
}

interface PublishRoute {
  Params: { '*': string }
  Querystring: { channel: string }
  Body: unknown
}

export async function cometRoutes (fastify: FastifyInstance, { bus, metrics, options, presence }: CometRoutesOptions): Promise<void> {
  const { maxChannels, maxPayload, authorizePublish, authorizeSubscribe, routeOptions, schemaHide } = options
  // Every subscribe answer says how long the server lets a poll wait, in seconds: a client gives up
  // on a poll whose connection died silently once that, plus a margin, has passed.
  const cometWait = String(options.pollTimeoutMs / 1000)
  const streams = new StreamHub(bus, metrics, options.stream)

  strictUtf8Bodies(fastify)
  // Polls must never be answered from a cache, and neither must their errors: the handlers say so
  // on their answers, and this hook on every error, whichever step of the request it comes from.
  // (A hook on every request would cost each poll a step of Fastify's hook runner.)
  fastify.addHook('onError', async (_request, reply, error) => {
    reply.header('cache-control', 'no-store')
    // The Retry-After that the error carries (see lib/errors.ts), set here too so that the plugin's
    // routes send it under an error handler of the user's, which may not copy error.headers.
    if (error.code === 'FST_COMET_TOO_MANY_PENDING' || error.code === 'FST_COMET_TOO_MANY_STREAMS' || error.code === 'FST_COMET_ENGINE_UNAVAILABLE') {
      // An engine of a third party may make its own error of the code, without the header.
      const retryAfter = (error as { headers?: Partial<RetryAfterHeaders> }).headers?.['retry-after']
      if (retryAfter !== undefined) reply.header('retry-after', retryAfter)
    }
    metrics.onError(error)
  })

  // A channel's joins and leaves (<channel>@presence) are for those who may subscribe to it.
  const guardedChannels = (channels: readonly string[]): readonly string[] => presence === undefined ? channels : channels.map(name => presence.guardOf(name))

  // Polls are quiet unless the user chose a level: see the logLevel option.
  const subscribeOptions = { logLevel: quieterLogLevel('warn', fastify.log.level), ...routeOptions }
  // Fastify's automatic HEAD route would run the handler and hold a real poll for nothing.
  fastify.head('/subscribe', { ...subscribeOptions, schema: routeSchema({}, schemaHide) }, (_request, reply) => { reply.header('cache-control', 'no-store').type('application/json; charset=utf-8').send() })
  // Not an async handler: on the memory engine a poll goes from its request to its answer without
  // a promise, which is most of what it costs beyond Fastify's own work (see the README's Benchmarks).
  fastify.get('/subscribe', { ...subscribeOptions, schema: routeSchema(subscribeSchema, schemaHide), schemaErrorFormatter: subscribeValidationError, exposeHeadRoute: false }, (request: FastifyRequest, reply: FastifyReply) => {
    const subscription = parseSubscription(request.query as Record<string, unknown>)
    const channelCount = subscription.channels.length
    if (channelCount === 0) throw new errors.FST_COMET_NO_CHANNEL()
    if (channelCount > maxChannels) throw new errors.FST_COMET_TOO_MANY_CHANNELS(channelCount, maxChannels)
    // Server-Sent Events on the same query, limits and authorization (lib/http/stream.ts).
    // An open stream is a member of its channels for its whole life, as a poll is for its own.
    if (wantsStream(request)) {
      const entered = authorizeSubscribe === undefined
        ? presence?.enter(request, subscription.channels)
        : authorizeEach(request, guardedChannels(subscription.channels), authorizeSubscribe, 'subscribe to').then(() => presence?.enter(request, subscription.channels))
      if (!(entered instanceof Promise)) {
        if (entered !== undefined) releaseWhenClosed(reply, entered)
        return streams.open(request, reply, subscription)
      }
      return entered.then(release => new Promise<void>(resolve => {
        if (release !== undefined) releaseWhenClosed(reply, release)
        streams.open(request, reply, subscription, resolve)
      }))
    }
    // Before the poll starts: it may be answered at once.
    reply.header('cache-control', 'no-store').type('application/json; charset=utf-8').header('comet-wait', cometWait)
    const wait = (request.query as { wait?: string }).wait !== '0'
    let entered: Promise<(() => void) | undefined>
    if (authorizeSubscribe === undefined) {
      // A presence hook that answers synchronously keeps the poll on this path.
      const release = presence?.enter(request, subscription.channels)
      if (!(release instanceof Promise)) {
        if (release !== undefined) releaseWhenClosed(reply, release)
        cancelOnHangUp(request, reply, bus.poll(subscription, { wait, answerer: new ReplyAnswerer(reply) }))
        return
      }
      entered = release
    } else {
      entered = authorizeEach(request, guardedChannels(subscription.channels), authorizeSubscribe, 'subscribe to').then(() => presence?.enter(request, subscription.channels))
    }
    // Resolves to the answer's JSON, which Fastify sends as an async handler's result.
    return entered.then(release => {
      if (release !== undefined) releaseWhenClosed(reply, release)
      const poll = bus.poll(subscription, { wait })
      cancelOnHangUp(request, reply, poll)
      return poll.reply
    })
  })

  // The channel goes in the path, or in the query string: WHATWG URL clients (browsers, fetch)
  // resolve the names "." and "..", even percent-encoded, as dot segments before sending.
  const publishOptions = { ...routeOptions, schemaErrorFormatter: publishValidationError(options.prefix), bodyLimit: maxPayload }
  fastify.post<PublishRoute>('/publish/*', { ...publishOptions, schema: routeSchema(publishInPathSchema, schemaHide) }, async (request, reply) => {
    return publish(request, reply, request.params['*'])
  })
  fastify.post<PublishRoute>('/publish', { ...publishOptions, schema: routeSchema(publishInQuerySchema, schemaHide) }, async (request, reply) => {
    return publish(request, reply, request.query.channel)
  })

  if (presence !== undefined) await fastify.register(presenceRoute, { presence, authorizeSubscribe, routeOptions, schemaHide })

  async function publish (request: FastifyRequest, reply: FastifyReply, channel: string): Promise<{ id: string }> {
    reply.header('cache-control', 'no-store')
    presence?.checkPublish(channel)
    if (authorizePublish !== undefined) await authorizeEach(request, [channel], authorizePublish, 'publish to')
    // Checked by the bus rather than a header schema: fastify.comet.publish() takes the same key,
    // and a publish without one costs no validation of its headers.
    // Node.js gives an array only for set-cookie: a header sent twice is one string (see idempotencyKeyOfHeader).
    const header = request.headers['idempotency-key'] as string | undefined
    // No body is a plain "something changed" notification, as in the PHP original.
    const result = await bus.publish(channel, request.body ?? null, header === undefined ? undefined : { idempotencyKey: idempotencyKeyOfHeader(header) })
    // The name Stripe's API uses; the body is the first publish's, as the IETF draft asks.
    if (result.replayed === true) reply.header('idempotent-replayed', 'true')
    return result
  }
}

/** Present until the poll ends, answered or hung up (maybe while the hooks ran). */
function releaseWhenClosed (reply: FastifyReply, release: () => void): void {
  if (reply.raw.destroyed) release()
  else reply.raw.once('close', release)
}

/** Sends a poll's answer, or its error, on its reply. */
class ReplyAnswerer implements PollAnswerer {
  readonly #reply: FastifyReply

  constructor (reply: FastifyReply) {
    this.#reply = reply
  }

  answer (json: string): void {
    this.#reply.send(json)
  }

  fail (error: unknown): void {
    this.#reply.send(error instanceof Error ? error : new Error(String(error)))
  }
}

async function authorizeEach (request: FastifyRequest, channels: Iterable<string>, authorize: CometAuthorizer, action: string): Promise<void> {
  const names = [...channels]
  const verdicts = await Promise.all(names.map(channel => authorize(request, channel)))
  const denied = verdicts.findIndex(allowed => allowed !== true)
  if (denied !== -1) throw new errors.FST_COMET_FORBIDDEN(action, names[denied] as string)
}

// Schema errors turned into the plugin's coded errors, which say what a name or cursor may be.
function subscribeValidationError (validationErrors: FastifySchemaValidationError[], dataVar: string): Error {
  for (const error of validationErrors) {
    const badName = (error.params as { propertyName?: unknown }).propertyName
    if (error.keyword === 'propertyNames' && typeof badName === 'string') {
      return new errors.FST_COMET_INVALID_CHANNEL(JSON.stringify(badName.replace(/^subscribed\[(.*)\]$/, '$1')))
    }
    // The cursor of subscribed[<channel>] (flat) or subscribed.<channel> (nested).
    const cursorOf = /^\/subscribed(?:\[(.*)\]|\/(.*))$/.exec(error.instancePath)
    if (error.keyword === 'pattern' && cursorOf !== null) {
      return new errors.FST_COMET_INVALID_CURSOR(JSON.stringify(cursorOf[1] ?? cursorOf[2]))
    }
    // Several cursors of one channel: see cursorOfOneChannel in schemas.ts.
    if (error.keyword === 'maxItems' && cursorOf !== null) {
      return new errors.FST_COMET_DUPLICATE_CHANNEL(JSON.stringify(cursorOf[1] ?? cursorOf[2]))
    }
  }
  return fastifyValidationError(validationErrors, dataVar)
}

// The channel is all that the publish schemas check (in the path, or as ?channel=).
function publishValidationError (prefix: string): (validationErrors: FastifySchemaValidationError[]) => Error {
  return validationErrors => validationErrors.some(e => e.keyword === 'required' || e.keyword === 'minLength')
    ? new errors.FST_COMET_NO_PUBLISH_CHANNEL(prefix, prefix)
    : new errors.FST_COMET_INVALID_CHANNEL('in the publish URL')
}

// What Fastify answers when a route has no formatter of its own.
function fastifyValidationError (validationErrors: FastifySchemaValidationError[], dataVar: string): Error {
  return new Error(validationErrors.map(e => `${dataVar}${e.instancePath} ${String(e.message)}`).join(', '))
}
