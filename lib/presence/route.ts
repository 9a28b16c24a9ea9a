// The presence route: GET {prefix}/presence/<channel> (or ?channel=<channel>) answers who is on a
// channel, to those allowed to subscribe to it.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { errors } from '../errors.js'
import type { CometAuthorizer, CometRouteOptions } from '../options.js'
import { channelNamePattern } from '../protocol/poll.js'
import { routeSchema } from '../http/route-options.js'
import type { Presence } from './presence.js'
import type { PresenceSnapshotAt } from './store.js'

export interface PresenceRouteOptions {
  presence: Presence
  authorizeSubscribe: CometAuthorizer | undefined
  routeOptions: CometRouteOptions
  schemaHide: boolean
}

const errorReply = {
  type: 'object',
  properties: { statusCode: { type: 'integer' }, code: { type: 'string' }, error: { type: 'string' }, message: { type: 'string' } }
} as const

const snapshotReply = {
  200: {
    type: 'object',
    required: ['count', 'members'],
    properties: {
      /** Every member, however many. */
      count: { type: 'integer' },
      /** The longest-present first, at most presenceMaxMembers. */
      members: {
        type: 'array',
        items: { type: 'object', required: ['id', 'info', 'since'], properties: { id: { type: 'string' }, info: {}, since: { type: 'integer' } } }
      },
      /** With presenceEvents: the cursor of <channel>@presence at the snapshot's instant. */
      cursor: { type: 'string' }
    }
  },
  '4xx': errorReply,
  '5xx': errorReply
} as const

export const presenceInPathSchema = {
  params: { type: 'object', required: ['*'], properties: { '*': { type: 'string', pattern: channelNamePattern } } },
  response: snapshotReply
} as const

export const presenceInQuerySchema = {
  querystring: { type: 'object', required: ['channel'], properties: { channel: { type: 'string', pattern: channelNamePattern } } },
  response: snapshotReply
} as const

interface PresenceRoute {
  Params: { '*': string }
  Querystring: { channel: string }
}

export async function presenceRoute (fastify: FastifyInstance, { presence, authorizeSubscribe, routeOptions, schemaHide }: PresenceRouteOptions): Promise<void> {
  const options = { ...routeOptions, schemaErrorFormatter: () => new errors.FST_COMET_INVALID_CHANNEL('in the presence URL') }
  fastify.get<PresenceRoute>('/presence/*', { ...options, schema: routeSchema(presenceInPathSchema, schemaHide) }, async (request, reply) => {
    return snapshot(request, reply, request.params['*'])
  })
  fastify.get<PresenceRoute>('/presence', { ...options, schema: routeSchema(presenceInQuerySchema, schemaHide) }, async (request, reply) => {
    return snapshot(request, reply, request.query.channel)
  })

  async function snapshot (request: FastifyRequest, reply: FastifyReply, channel: string): Promise<PresenceSnapshotAt> {
    reply.header('cache-control', 'no-store')
    if (authorizeSubscribe !== undefined && await authorizeSubscribe(request, channel) !== true) throw new errors.FST_COMET_FORBIDDEN('read the members of', channel)
    return presence.snapshot(channel)
  }
}
