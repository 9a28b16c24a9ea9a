// JSON schemas of the routes: Fastify validates requests with them, serializes the publish reply,
// and they document the protocol for tools that read route schemas (e.g. @fastify/swagger).
import { channelNameChars, channelNamePattern, cursorPattern } from '../protocol/poll.js'

const cursor = { type: 'string', pattern: cursorPattern } as const

// A channel named twice comes as an array of its cursors (of two or more: the validator turns an
// array of one into a string). It fails the first branch on its type and the second with maxItems,
// which subscribeValidationError turns into an error that says so. A bad cursor fails the first
// branch on its pattern, which comes first among the errors.
const cursorOfOneChannel = { anyOf: [cursor, { type: 'array', maxItems: 0 }] } as const

const channelCursors = {
  type: 'object',
  propertyNames: { pattern: channelNamePattern },
  additionalProperties: { type: 'string' }
} as const

const errorReply = {
  type: 'object',
  properties: {
    statusCode: { type: 'integer' },
    code: { type: 'string' },
    error: { type: 'string' },
    message: { type: 'string' }
  }
} as const

export const subscribeSchema = {
  querystring: {
    type: 'object',
    properties: {
      // The nested form, from query-string parsers such as qs.
      subscribed: { ...channelCursors, additionalProperties: cursorOfOneChannel },
      /** 0 answers at once, with events or not: how a client learns where "now" is. */
      wait: { type: 'string', enum: ['0', '1'] }
    },
    // The flat form, from Fastify's default parser: one key per channel, subscribed[<channel>].
    patternProperties: { '^subscribed\\[': cursorOfOneChannel },
    propertyNames: {
      if: { pattern: '^subscribed\\[' },
      then: { pattern: `^subscribed\\[${channelNameChars}\\]$` }
    }
  },
  response: {
    200: {
      type: 'object',
      required: ['s', 'p'],
      properties: {
        /** 1 when the reply carries events or a gap, 0 when the poll timed out. */
        s: { type: 'integer', enum: [0, 1] },
        /** Channel → cursor of its last delivered event, for channels with events. */
        k: channelCursors,
        /** Channel → its events, oldest first. */
        m: {
          type: 'object',
          additionalProperties: {
            type: 'array',
            items: { type: 'object', required: ['id', 'data'], properties: { id: { type: 'string' }, data: {} } }
          }
        },
        /** Channel → the cursor to send next time, for every subscribed channel. */
        p: channelCursors,
        /** Channels whose history no longer holds every event after the cursor sent. */
        gap: { type: 'array', items: { type: 'string' } }
      }
    },
    '4xx': errorReply,
    '5xx': errorReply
  }
} as const

// minLength before pattern (Ajv checks them in that order): an empty channel is a missing one.
const publishChannel = { type: 'string', minLength: 1, pattern: channelNamePattern } as const

const publishReply = {
  200: {
    type: 'object',
    required: ['id'],
    properties: { id: { type: 'string' } }
  },
  '4xx': errorReply,
  '5xx': errorReply
} as const

/** POST {prefix}/publish/<channel> */
export const publishInPathSchema = {
  params: {
    type: 'object',
    required: ['*'],
    properties: { '*': publishChannel }
  },
  response: publishReply
} as const

/** POST {prefix}/publish?channel=<channel> */
export const publishInQuerySchema = {
  querystring: {
    type: 'object',
    required: ['channel'],
    properties: { channel: publishChannel }
  },
  response: publishReply
} as const
