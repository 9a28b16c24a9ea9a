// Serves the client (lib/client/, bundled) at {prefix}/client.js as one ES module, so that a page
// can import it without a build step.
import { createHash } from 'node:crypto'
import { access, readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { brotliCompressSync, constants as zlibConstants, gzipSync } from 'node:zlib'
import type { FastifyInstance } from 'fastify'
import { bundleClient } from '../client-bundle.js'
import { errors } from '../errors.js'
import type { ResolvedCometOptions } from '../options.js'
import { routeSchema } from './route-options.js'

/** The script in one content coding, with its own entity tag (RFC 9110 §8.8.3: one per representation). */
interface Representation {
  readonly encoding: 'br' | 'gzip' | undefined
  readonly body: Buffer
  readonly etag: string
}

export async function clientRoute (fastify: FastifyInstance, { options }: { options: ResolvedCometOptions }): Promise<void> {
  const representations = await (defaultRepresentations ??= loadClientScript(new URL('../client/', import.meta.url)).then(represent))

  fastify.get('/client.js', { ...options.routeOptions, schema: routeSchema({}, options.schemaHide) }, async (request, reply) => {
    const chosen = representationFor(representations, request.headers['accept-encoding'])
    // Cached, but checked on every use: a new version of the package is picked up at once.
    reply.header('cache-control', 'no-cache').header('vary', 'Accept-Encoding').header('etag', chosen.etag)
    if (noneMatch(request.headers['if-none-match'], chosen.etag)) return reply.code(304).send()
    if (chosen.encoding !== undefined) reply.header('content-encoding', chosen.encoding)
    return reply.type('text/javascript; charset=utf-8').send(chosen.body)
  })
}

/** The script as it is, gzipped and in Brotli, compressed once when the plugin registers. */
export function represent (script: string): Representation[] {
  const body = Buffer.from(script, 'utf8')
  const hash = createHash('sha256').update(body).digest('base64url').slice(0, 27)
  const brotliOptions = { params: { [zlibConstants.BROTLI_PARAM_QUALITY]: 11, [zlibConstants.BROTLI_PARAM_SIZE_HINT]: body.length } }
  return [
    { encoding: 'br', body: brotliCompressSync(body, brotliOptions), etag: `"${hash}-br"` },
    { encoding: 'gzip', body: gzipSync(body, { level: 9 }), etag: `"${hash}-gzip"` },
    { encoding: undefined, body, etag: `"${hash}"` }
  ]
}

/** The first of br, gzip that Accept-Encoding allows (a q of 0 forbids), else the script as it is. */
function representationFor (representations: readonly Representation[], acceptEncoding: string | undefined): Representation {
  if (acceptEncoding !== undefined) {
    const accepted = new Map<string, number>()
    for (const part of acceptEncoding.split(',')) {
      const [coding = '', ...parameters] = part.split(';').map(p => p.trim().toLowerCase())
      const q = parameters.find(p => p.startsWith('q='))
      accepted.set(coding === 'x-gzip' ? 'gzip' : coding, q === undefined ? 1 : Number(q.slice(2)))
    }
    for (const representation of representations) {
      const q = accepted.get(representation.encoding as string) ?? accepted.get('*') ?? 0
      if (representation.encoding !== undefined && q > 0) return representation
    }
  }
  return representations[representations.length - 1] as Representation
}

/**
 * If-None-Match by RFC 9110 §13.1.2: `*`, or a list of entity tags compared weakly (W/ ignored),
 * any of which matching the one that would be sent.
 */
function noneMatch (ifNoneMatch: string | undefined, etag: string): boolean {
  if (ifNoneMatch === undefined) return false
  if (ifNoneMatch.trim() === '*') return true
  return ifNoneMatch.split(',').some(tag => tag.trim().replace(/^W\//, '') === etag)
}

// Read once per process, however many servers register the plugin.
let defaultRepresentations: Promise<Representation[]> | undefined

/**
 * The client as a browser loads it: one ES module. An installed package has it bundled, next to
 * this module; a checkout of the repository runs from TypeScript, so it is bundled here, with the
 * esbuild that a checkout has among its devDependencies.
 */
export async function loadClientScript (directory: URL): Promise<string> {
  try {
    const bundled = await readFile(new URL('client.js', directory), 'utf8')
    // The source map is not served.
    return bundled.replace(/^\/\/# sourceMappingURL=.*$/m, '')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
  }
  const entry = new URL('client.ts', directory)
  try {
    await access(entry)
  } catch {
    throw new errors.FST_COMET_CLIENT_MISSING(fileURLToPath(directory))
  }
  return await bundleClient(fileURLToPath(entry))
}
