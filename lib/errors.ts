import createError from '@fastify/error'

// Every error the plugin raises, in one place. Each message starts with the package name and says
// how to fix the problem; the status code is what a client gets when the error reaches a reply.
export const errors = {
  /** A registration option has a wrong type or value. */
  FST_COMET_INVALID_OPTION: createError<[string, string, string]>(
    'FST_COMET_INVALID_OPTION',
    'fastify-comet: option "%s" must be %s (got %s)',
    500
  ),
  /** A registration option that the plugin does not know, usually a typo. */
  FST_COMET_UNKNOWN_OPTION: createError<[string, string]>(
    'FST_COMET_UNKNOWN_OPTION',
    'fastify-comet: unknown option "%s"; the options are %s',
    500
  ),
  /** The plugin registered a second time in one encapsulation context. */
  FST_COMET_ALREADY_REGISTERED: createError(
    'FST_COMET_ALREADY_REGISTERED',
    'fastify-comet: registered twice on one instance (it has fastify.comet already); register it once, or, for a second set of channels, once more inside an encapsulated context with a prefix of its own: fastify.register(async child => { await child.register(fastifyComet, { prefix: "/other" }) })',
    500
  ),
  /** registerCometMetrics() on a registry that has metrics of the same names, of another fastify.comet or not. */
  FST_COMET_METRICS_ALREADY_REGISTERED: createError<[string]>(
    'FST_COMET_METRICS_ALREADY_REGISTERED',
    'fastify-comet: the registry has a metric named %s already, not registered by registerCometMetrics() for this fastify.comet; give each instance a prefix (registerCometMetrics(fastify.comet, { prefix: "comet_other_" })) or a registry of its own, or remove the old instance\'s metrics (registry.clear()) before registering the new one\'s',
    500
  ),
  /** Neither the compiled client nor its source is where the package put it. */
  FST_COMET_CLIENT_MISSING: createError<[string]>(
    'FST_COMET_CLIENT_MISSING',
    'fastify-comet: the browser client is not in %s; reinstall fastify-comet, or set serveClient: false',
    500
  ),
  FST_COMET_INVALID_CHANNEL: createError<[string]>(
    'FST_COMET_INVALID_CHANNEL',
    'fastify-comet: invalid channel name %s; a channel name has 1 to 128 characters from A-Z a-z 0-9 _ - . : @',
    400
  ),
  FST_COMET_INVALID_CURSOR: createError<[string]>(
    'FST_COMET_INVALID_CURSOR',
    'fastify-comet: invalid cursor for channel %s; send "0" (or nothing) to start from now, "all" for everything held, or a cursor this server returned in "p"',
    400
  ),
  FST_COMET_DUPLICATE_CHANNEL: createError<[string]>(
    'FST_COMET_DUPLICATE_CHANNEL',
    'fastify-comet: a subscribe names channel %s more than once; send each channel once, as subscribed[<channel>]=<cursor> with the cursor of its last answer',
    400
  ),
  FST_COMET_NO_CHANNEL: createError(
    'FST_COMET_NO_CHANNEL',
    'fastify-comet: a subscribe names no channel; add at least one subscribed[<channel>]=<cursor> to the query string',
    400
  ),
  FST_COMET_TOO_MANY_CHANNELS: createError<[number, number]>(
    'FST_COMET_TOO_MANY_CHANNELS',
    'fastify-comet: a subscribe names %d channels, more than maxChannels (%d); split it into several polls or raise maxChannels',
    400
  ),
  FST_COMET_NO_PUBLISH_CHANNEL: createError<[string, string]>(
    'FST_COMET_NO_PUBLISH_CHANNEL',
    'fastify-comet: a publish names no channel; put it in the path, POST %s/publish/<channel>, or in the query string, POST %s/publish?channel=<channel>',
    400
  ),
  FST_COMET_INVALID_DATA: createError<[string]>(
    'FST_COMET_INVALID_DATA',
    'fastify-comet: event data cannot be sent as JSON (%s); publish plain JSON values',
    400
  ),
  FST_COMET_PAYLOAD_TOO_LARGE: createError<[number, number]>(
    'FST_COMET_PAYLOAD_TOO_LARGE',
    'fastify-comet: event data is %d bytes as JSON, more than maxPayload (%d); send less or raise maxPayload',
    413
  ),
  FST_COMET_UNSUPPORTED_CHARSET: createError<[string]>(
    'FST_COMET_UNSUPPORTED_CHARSET',
    'fastify-comet: a publish body in charset %s is not accepted; send it as UTF-8, with charset=utf-8 or no charset',
    415
  ),
  FST_COMET_INVALID_UTF8: createError(
    'FST_COMET_INVALID_UTF8',
    'fastify-comet: the publish body is not valid UTF-8; encode the text as UTF-8 (it is refused rather than altered)',
    400
  ),
  FST_COMET_FORBIDDEN: createError<[string, string]>(
    'FST_COMET_FORBIDDEN',
    'fastify-comet: not allowed to %s channel "%s"',
    403
  ),
  /** Past maxPending; the error carries its Retry-After as `headers` (see withRetryAfter). */
  FST_COMET_TOO_MANY_PENDING: createError<[number]>(
    'FST_COMET_TOO_MANY_PENDING',
    'fastify-comet: the server holds its most long-polls already (maxPending %d); retry after the Retry-After delay',
    503
  ),
  /** A stream asked for while `maxStreams` streams are open; the error carries its Retry-After as `headers` (see withRetryAfter). */
  FST_COMET_TOO_MANY_STREAMS: createError<[number]>(
    'FST_COMET_TOO_MANY_STREAMS',
    'fastify-comet: the server holds its most streams already (maxStreams %d); retry after the Retry-After delay, or long-poll instead',
    503
  ),
  /** The Last-Event-ID header of a stream is not one this plugin's streams send. */
  FST_COMET_INVALID_LAST_EVENT_ID: createError<[string]>(
    'FST_COMET_INVALID_LAST_EVENT_ID',
    'fastify-comet: invalid Last-Event-ID header (%s); send back the id of an event of a stream on the same subscribe URL, or no Last-Event-ID to start from the URL\'s cursors',
    400
  ),
  /** The engine's store (Redis) cannot be reached; the error carries `headers` with a Retry-After of 1 s. */
  FST_COMET_ENGINE_UNAVAILABLE: createError<[string]>(
    'FST_COMET_ENGINE_UNAVAILABLE',
    'fastify-comet: the engine cannot reach its store (%s); retry after the Retry-After delay, and check that Redis is up',
    503
  ),
  /** An `Idempotency-Key` header, or the `idempotencyKey` of `fastify.comet.publish()`, that is not a key. */
  FST_COMET_INVALID_IDEMPOTENCY_KEY: createError<[string]>(
    'FST_COMET_INVALID_IDEMPOTENCY_KEY',
    'fastify-comet: invalid idempotency key %s; a key has 1 to 128 characters from A-Z a-z 0-9 _ - . : ~ @ + / = (a UUID will do), optionally in double quotes',
    400
  ),
  /** A key already used on this channel, within the window, for different data. */
  FST_COMET_IDEMPOTENCY_KEY_REUSED: createError<[string, string]>(
    'FST_COMET_IDEMPOTENCY_KEY_REUSED',
    'fastify-comet: idempotency key %s was used on channel "%s" for different data; send a retry with the same data, and a new event with a new key',
    422
  ),
  /** A keyed publish on an engine that does not implement `publishIdempotent`. */
  FST_COMET_IDEMPOTENCY_UNSUPPORTED: createError(
    'FST_COMET_IDEMPOTENCY_UNSUPPORTED',
    'fastify-comet: the engine does not support idempotency keys (it has no publishIdempotent method); publish without a key, or use MemoryEngine or RedisEngine',
    501
  ),
  /** The `limit` of `fastify.comet.history()` is not a positive integer. */
  FST_COMET_INVALID_LIMIT: createError<[string]>(
    'FST_COMET_INVALID_LIMIT',
    'fastify-comet: history limit must be a positive integer (got %s)',
    400
  ),
  /** The `presence` hook returned something that is not a member identity: a bug in the server's code. */
  FST_COMET_INVALID_PRESENCE: createError<[string, string, string]>(
    'FST_COMET_INVALID_PRESENCE',
    'fastify-comet: the presence hook gave %s for channel "%s"; %s (return null when the request is no member)',
    500
  ),
  /** A publish on the channel of another channel's joins and leaves, which only presence writes. */
  FST_COMET_PRESENCE_CHANNEL: createError<[string]>(
    'FST_COMET_PRESENCE_CHANNEL',
    'fastify-comet: channel "%s" carries joins and leaves, which only presence publishes; publish on another channel (names ending in @presence are reserved while the presence option is set)',
    403
  ),
  /** fastify.comet.presence() or the presence route without the presence option. */
  FST_COMET_PRESENCE_OFF: createError(
    'FST_COMET_PRESENCE_OFF',
    'fastify-comet: presence is off; set the presence option, (request, channel) => ({ id, info }) or null, to track members',
    500
  ),
  FST_COMET_CLOSED: createError(
    'FST_COMET_CLOSED',
    'fastify-comet: the server is closing; publish before fastify.close() or on a running instance',
    503
  )
}

/** The headers that an error asking the client to come back later carries. */
export interface RetryAfterHeaders {
  readonly 'retry-after': string
}

// An error that asks the client to come back later carries its Retry-After as `headers`, which
// Fastify's default error handler sets on the reply: a route of the user's that lets one through
// (calling fastify.comet.publish() while Redis is down) answers with the header, not only the
// plugin's own routes. Not enumerable, so that a logged error does not repeat it.
// On the prototype of FST_COMET_ENGINE_UNAVAILABLE, so that every one has it, whoever made it
// (an engine of a third party too): the Redis engine reconnects within about a second.
Object.defineProperty(errors.FST_COMET_ENGINE_UNAVAILABLE.prototype, 'headers', {
  value: Object.freeze({ 'retry-after': '1' } satisfies RetryAfterHeaders)
})

/** Gives an error the Retry-After, in whole seconds, that Fastify's default error handler sends with it. */
export function withRetryAfter<E extends Error> (error: E, seconds: number): E & { readonly headers: RetryAfterHeaders } {
  return Object.defineProperty(error, 'headers', { value: Object.freeze({ 'retry-after': String(seconds) }) }) as E & { readonly headers: RetryAfterHeaders }
}
