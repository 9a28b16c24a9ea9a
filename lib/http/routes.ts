// Where a request enters: the subscribe and publish routes. They check what HTTP brings (schemas,
// limits, authorization) and hand over to the bus.
import type { FastifyInstance, FastifyReply, FastifyRequest, FastifySchemaValidationError } from 'fastify'
import type { CometBus } from '../bus.js'
import { errors } from '../errors.js'
import type { CometAuthorizer, ResolvedCometOptions } from '../options.js'
import { parseSubscription } from '../protocol.js'
import { publishInPathSchema, publishInQuerySchema, subscribeSchema } from './schemas.js'

export interface CometRoutesOptions {
  bus: CometBus
  options: ResolvedCometOptions
}

interface PublishRoute {
  Params: { '*': string }
  Querystring: { channel: string }
  Body: unknown
}

export async function cometRoutes (fastify: FastifyInstance, { bus, options }: CometRoutesOptions): Promise<void> {
  const { maxChannels, maxPayload, authorizePublish, authorizeSubscribe, retryAfterSeconds } = options

  // Polls must never be answered from a cache, and neither must their errors.
  // A callback hook, not an async one: it runs on every poll, and needs no promise.
  fastify.addHook('onRequest', (_request, reply, done) => {
    reply.header('cache-control', 'no-store')
    done()
  })
  fastify.addHook('onError', async (_request, reply, error) => {
    if (error.code === 'FST_COMET_TOO_MANY_PENDING') reply.header('retry-after', String(retryAfterSeconds))
    // The engine reconnects within about a second.
    if (error.code === 'FST_COMET_ENGINE_UNAVAILABLE') reply.header('retry-after', '1')
  })

  fastify.get('/subscribe', { schema: subscribeSchema, schemaErrorFormatter: subscribeValidationError }, async (request: FastifyRequest, reply: FastifyReply) => {
    const subscription = parseSubscription(request.query as Record<string, unknown>)
    if (subscription.size === 0) throw new errors.FST_COMET_NO_CHANNEL()
    if (subscription.size > maxChannels) throw new errors.FST_COMET_TOO_MANY_CHANNELS(subscription.size, maxChannels)
    if (authorizeSubscribe !== undefined) await authorizeEach(request, subscription.keys(), authorizeSubscribe, 'subscribe to')

    const poll = bus.poll(subscription, { wait: (request.query as { wait?: string }).wait !== '0' })
    if (request.raw.socket.destroyed) {
      // The client hung up before this point (say, while an authorization hook ran): its 'close' is past.
      poll.cancel()
    } else {
      // 'close' comes once, also after a normal answer, when cancelling is a no-op.
      reply.raw.on('close', () => poll.cancel())
    }
    reply.type('application/json; charset=utf-8')
    return poll.reply
  })

  // The channel goes in the path, or in the query string: WHATWG URL clients (browsers, fetch)
  // resolve the names "." and "..", even percent-encoded, as dot segments before sending.
  const publishOptions = { schemaErrorFormatter: publishValidationError, bodyLimit: maxPayload }
  fastify.post<PublishRoute>('/publish/*', { ...publishOptions, schema: publishInPathSchema }, async request => {
    return publish(request, request.params['*'])
  })
  fastify.post<PublishRoute>('/publish', { ...publishOptions, schema: publishInQuerySchema }, async request => {
    return publish(request, request.query.channel)
  })

  async function publish (request: FastifyRequest, channel: string): Promise<{ id: string }> {
    if (authorizePublish !== undefined) await authorizeEach(request, [channel], authorizePublish, 'publish to')
    // No body is a plain "something changed" notification, as in the PHP original.
    return bus.publish(channel, request.body ?? null)
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
  }
  return fastifyValidationError(validationErrors, dataVar)
}

// The channel is all that the publish schemas check (in the path, or as ?channel=).
function publishValidationError (): Error {
  return new errors.FST_COMET_INVALID_CHANNEL('in the publish URL')
}

// What Fastify answers when a route has no formatter of its own.
function fastifyValidationError (validationErrors: FastifySchemaValidationError[], dataVar: string): Error {
  return new Error(validationErrors.map(e => `${dataVar}${e.instancePath} ${String(e.message)}`).join(', '))
}
