// The client served at {prefix}/client.js: one ES module a page imports without a build step.
import { execFile } from 'node:child_process'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { promisify } from 'node:util'
import { brotliDecompressSync, gunzipSync } from 'node:zlib'
import Fastify from 'fastify'
import t from 'tap'
import type * as ClientModule from '../lib/client/client.js'
import { loadClientScript } from '../lib/http/client-route.js'
import comet from '../plugin.js'
import { eventually, outsideTap, serve } from './helpers.js'

t.test('GET {prefix}/client.js serves the client as a JavaScript module that works on its own', async t => {
  const { app, origin } = await serve(t)
  const response = await fetch(`${origin}/comet/client.js`)
  t.equal(response.status, 200)
  t.equal(response.headers.get('content-type'), 'text/javascript; charset=utf-8')
  t.equal(response.headers.get('cache-control'), 'no-cache')
  const script = await response.text()
  t.notMatch(script, /^\s*import\s/m, 'no import: a page loads one file')
  t.notMatch(script, /sourceMappingURL/)

  // Imported as a browser would: from the text alone, with no TypeScript and no node_modules.
  const served = await import(`data:text/javascript,${encodeURIComponent(script)}`) as typeof ClientModule
  const client = new served.CometClient({ url: `${origin}/comet` })
  t.teardown(() => { client.close() })
  const seen: unknown[] = []
  await client.subscribe('room', data => { seen.push(data) }).ready
  await client.publish('room', 'through the served client')
  await eventually(() => seen.length === 1)
  t.same(seen, ['through the served client'])
  t.equal(app.comet.stats().delivered, 1)
})

t.test('a browser that has the script already gets 304 Not Modified', async t => {
  const { origin } = await serve(t)
  const identity = { 'accept-encoding': 'identity' }
  const first = await fetch(`${origin}/comet/client.js`, { headers: identity })
  const etag = first.headers.get('etag')
  t.match(etag, /^"[A-Za-z0-9_-]{27}"$/)
  const again = await fetch(`${origin}/comet/client.js`, { headers: { ...identity, 'if-none-match': etag as string } })
  t.equal(again.status, 304)
  t.equal(again.headers.get('etag'), etag)
  t.equal(again.headers.get('vary'), 'Accept-Encoding')
  t.equal(await again.text(), '')
  const changed = await fetch(`${origin}/comet/client.js`, { headers: { ...identity, 'if-none-match': '"older"' } })
  t.equal(changed.status, 200)
})

t.test('If-None-Match compares weakly, takes a list, and * (RFC 9110 §13.1.2)', async t => {
  // Regression: only the exact strong tag alone got 304.
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(comet)
  const etag = (await app.inject('/comet/client.js')).headers.etag as string
  const conditional = async (ifNoneMatch: string): Promise<number> =>
    (await app.inject({ url: '/comet/client.js', headers: { 'if-none-match': ifNoneMatch } })).statusCode
  t.equal(await conditional(`W/${etag}`), 304, 'a weak tag')
  t.equal(await conditional(`"older", ${etag}`), 304, 'a list')
  t.equal(await conditional(`"older",W/${etag}`), 304, 'a list without spaces')
  t.equal(await conditional('*'), 304, 'any')
  t.equal(await conditional('"older", W/"other"'), 200, 'a list of others')
  t.equal(await conditional(etag.slice(1, -1)), 200, 'a tag without its quotes is not the same tag')
})

t.test('the script is sent compressed when the client accepts it, with Vary: Accept-Encoding', async t => {
  // Regression: 13.5 KB went out as they are to every browser.
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(comet)
  const get = (acceptEncoding?: string) => app.inject({ url: '/comet/client.js', headers: acceptEncoding === undefined ? {} : { 'accept-encoding': acceptEncoding } })
  const plain = await get()
  t.equal(plain.headers['content-encoding'], undefined)
  t.equal(plain.headers.vary, 'Accept-Encoding')
  const script = plain.body

  const cases: Array<[string, string | undefined]> = [
    ['gzip, deflate, br', 'br'],
    ['gzip', 'gzip'],
    ['x-gzip', 'gzip'],
    ['br;q=0, gzip;q=0.5', 'gzip'],
    ['*', 'br'],
    ['*;q=0', undefined],
    ['deflate', undefined],
    ['identity', undefined]
  ]
  const etags = new Set<string>()
  for (const [acceptEncoding, expected] of cases) {
    const response = await get(acceptEncoding)
    t.equal(response.headers['content-encoding'], expected, acceptEncoding)
    t.equal(response.headers.vary, 'Accept-Encoding')
    const body = response.rawPayload
    const decoded = expected === 'br' ? brotliDecompressSync(body) : expected === 'gzip' ? gunzipSync(body) : body
    t.equal(decoded.toString('utf8'), script, `${acceptEncoding}: the same script`)
    if (expected !== undefined) t.ok(body.length < script.length / 2, `${acceptEncoding}: at most half the size`)
    etags.add(response.headers.etag as string)
    const again = await app.inject({ url: '/comet/client.js', headers: { 'accept-encoding': acceptEncoding, 'if-none-match': response.headers.etag as string } })
    t.equal(again.statusCode, 304, `${acceptEncoding}: its own tag matches`)
  }
  t.equal(etags.size, 3, 'each coding has a tag of its own')
})

t.test('an explicit q=0 forbids its coding even beside *', async t => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(comet)
  const encodingFor = async (acceptEncoding: string): Promise<string | undefined> =>
    (await app.inject({ url: '/comet/client.js', headers: { 'accept-encoding': acceptEncoding } })).headers['content-encoding'] as string | undefined
  t.equal(await encodingFor('br;q=0, *'), 'gzip', 'br is refused, anything else is welcome')
  t.equal(await encodingFor('*, br;q=0'), 'gzip', 'whatever the order')
  t.equal(await encodingFor('br;q=0, gzip;q=0, *'), undefined, 'both refused: the script as it is')
})

t.test('the script follows the prefix, and serveClient: false leaves it out', async t => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(comet, { prefix: '/live' })
  t.equal((await app.inject('/live/client.js')).statusCode, 200)
  t.equal((await app.inject('/comet/client.js')).statusCode, 404)

  const without = Fastify()
  t.teardown(() => without.close())
  await without.register(comet, { serveClient: false })
  t.equal((await without.inject('/comet/client.js')).statusCode, 404)
  t.equal((await without.inject('/comet/subscribe?subscribed[a]=0&wait=0')).statusCode, 200, 'the other routes are there')
})

t.test('an installed package serves the compiled client that sits beside the plugin', async t => {
  const directory = await mkdtemp(join(tmpdir(), 'comet-client-'))
  t.teardown(() => rm(directory, { recursive: true, force: true }))
  const where = pathToFileURL(`${directory}/`)

  await writeFile(join(directory, 'client.js'), 'export class CometClient {}\n//# sourceMappingURL=client.js.map\n')
  await writeFile(join(directory, 'client.ts'), 'not used when client.js is there')
  t.equal((await loadClientScript(where)).trim(), 'export class CometClient {}', 'as compiled, without the source map link')

  await rm(join(directory, 'client.js'))
  await writeFile(join(directory, 'client.ts'), 'export const answer: number = 42\n')
  const bundled = await loadClientScript(where)
  t.equal((await import(`data:text/javascript,${encodeURIComponent(bundled)}`) as { answer: unknown }).answer, 42, 'a checkout bundles the TypeScript source')

  await rm(join(directory, 'client.ts'))
  await t.rejects(loadClientScript(where), { code: 'FST_COMET_CLIENT_MISSING', message: /the browser client is not in .*comet-client-.*; reinstall fastify-comet, or set serveClient: false/ })

  await mkdir(join(directory, 'client.js'))
  await t.rejects(loadClientScript(where), { code: 'EISDIR' }, 'other read errors are not hidden')
})

t.test('a checkout compiles the client without keeping the TypeScript compiler in the process', async t => {
  // In a process of its own, without tap's loader, which may load TypeScript itself.
  const repoRoot = fileURLToPath(new URL('..', import.meta.url))
  const script = `
    import { createRequire } from 'node:module'
    import { loadClientScript } from ${JSON.stringify(pathToFileURL(join(repoRoot, 'lib/http/client-route.ts')).href)}
    const compiled = await loadClientScript(new URL('lib/client/', ${JSON.stringify(pathToFileURL(`${repoRoot}/`).href)}))
    const loaded = Object.keys(createRequire(import.meta.url).cache).filter(path => /[\\/]typescript[\\/]/.test(path))
    const { CometClient } = await import('data:text/javascript,' + encodeURIComponent(compiled))
    console.log(JSON.stringify({ compiled: typeof CometClient === 'function', loaded }))`
  const { stdout } = await promisify(execFile)(...outsideTap(process.execPath, ['--import=tsx', '--input-type=module', '-e', script]), { cwd: repoRoot })
  t.same(JSON.parse(stdout), { compiled: true, loaded: [] }, 'bundled by esbuild, in a process of its own')
})
