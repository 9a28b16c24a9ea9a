// Publish bodies read as bytes and decoded strictly: what is published is exactly what was sent, or
// the request is refused. Fastify's own parsers decode with U+FFFD for every byte that is not UTF-8
// and ignore the declared charset.
import { isUtf8 } from 'node:buffer'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { errors } from '../errors.js'

const charsetParameter = /;\s*charset\s*=\s*(?:"([^"]*)"|([^;\s]*))/i
const utf8Labels = ['utf-8', 'utf8']

/** Replaces the JSON and text parsers of `fastify` (an encapsulated context: the plugin's routes). */
export function strictUtf8Bodies (fastify: FastifyInstance): void {
  // Fastify's JSON parser, for its errors (empty body, not JSON) and its prototype-poisoning checks
  // as the application set them.
  const { onProtoPoisoning, onConstructorPoisoning } = fastify.initialConfig as { onProtoPoisoning: 'error', onConstructorPoisoning: 'error' }
  const parseJson = fastify.getDefaultJsonParser(onProtoPoisoning, onConstructorPoisoning)
  fastify.removeContentTypeParser(['application/json', 'text/plain'])
  fastify.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body, done) => {
    let text: string
    try {
      text = decodeUtf8(request, body as Buffer)
    } catch (error) {
      done(error as Error, undefined)
      return
    }
    parseJson(request, text, done)
  })
  fastify.addContentTypeParser('text/plain', { parseAs: 'buffer' }, async (request: FastifyRequest, body: Buffer) => decodeUtf8(request, body))
}

function decodeUtf8 (request: FastifyRequest, body: Buffer): string {
  const charset = charsetParameter.exec(request.headers['content-type'] as string)
  if (charset !== null) {
    const label = (charset[1] ?? charset[2] as string).toLowerCase()
    if (!utf8Labels.includes(label)) throw new errors.FST_COMET_UNSUPPORTED_CHARSET(JSON.stringify(label))
  }
  if (!isUtf8(body)) throw new errors.FST_COMET_INVALID_UTF8()
  return body.toString('utf8')
}
