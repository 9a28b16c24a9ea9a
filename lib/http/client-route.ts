// Serves the client (lib/client/client.ts) at {prefix}/client.js as one ES module, so that a page can
// import it without a build step.
import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import type { FastifyInstance } from 'fastify'
import { errors } from '../errors.js'
import type { ResolvedCometOptions } from '../options.js'
import { routeSchema } from './route-options.js'

export async function clientRoute (fastify: FastifyInstance, { options }: { options: ResolvedCometOptions }): Promise<void> {
  const script = await (defaultClientScript ??= loadClientScript(new URL('../client/', import.meta.url)))
  const etag = `"${createHash('sha256').update(script).digest('base64url').slice(0, 27)}"`

  fastify.get('/client.js', { ...options.routeOptions, schema: routeSchema({}, options.schemaHide) }, async (request, reply) => {
    // Cached, but checked on every use: a new version of the package is picked up at once.
    reply.header('cache-control', 'no-cache').header('etag', etag)
    if (request.headers['if-none-match'] === etag) return reply.code(304).send()
    return reply.type('text/javascript; charset=utf-8').send(script)
  })
}

// Read once per process, however many servers register the plugin.
let defaultClientScript: Promise<string> | undefined

/**
 * The client as a browser loads it. An installed package has it compiled, next to this module; a
 * checkout of the repository runs from TypeScript, so it is compiled here, with the TypeScript
 * compiler that a checkout has among its devDependencies.
 */
export async function loadClientScript (directory: URL): Promise<string> {
  try {
    const compiled = await readFile(new URL('client.js', directory), 'utf8')
    // The source map is not served.
    return compiled.replace(/^\/\/# sourceMappingURL=.*$/m, '')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
  }
  let source: string
  try {
    source = await readFile(new URL('client.ts', directory), 'utf8')
  } catch {
    throw new errors.FST_COMET_CLIENT_MISSING(fileURLToPath(directory))
  }
  const { default: ts } = await import('typescript')
  const compilerOptions = { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext }
  return ts.transpileModule(source, { compilerOptions }).outputText
}
