// The client bundled into one ES module by esbuild (lib/client-bundle.ts): what `npm run build`
// writes into dist, and what a checkout serves.
import { access, mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import type * as ClientModule from '../lib/client/client.js'
import { writeClientBundle } from '../lib/client-bundle.js'

t.test('the build writes the client as one module that imports nothing, with a map that points at its sources', async t => {
  const directory = await mkdtemp(join(tmpdir(), 'comet-bundle-'))
  t.teardown(() => rm(directory, { recursive: true, force: true }))
  const outfile = join(directory, 'client.js')
  await writeClientBundle('lib/client/client.ts', outfile)

  const script = await readFile(outfile, 'utf8')
  t.notMatch(script, /^\s*import\s/m, 'no import: a page loads one file')
  t.match(script, /\n\/\/# sourceMappingURL=client\.js\.map\n?$/)
  const map = JSON.parse(await readFile(`${outfile}.map`, 'utf8')) as { sources: string[], sourcesContent?: string[] }
  t.ok(map.sources.some(source => source.endsWith('lib/client/client.ts')), 'the map names the sources')
  for (const source of map.sources) await t.resolves(access(join(directory, source)), `${source} is where the map says`)
  t.equal(map.sourcesContent, undefined, 'without a copy of them: the package ships the sources')
  // The channel-name rule and the reply's shape come from where the server defines them, and
  // nothing else of the server comes along.
  t.ok(map.sources.some(source => source.endsWith('lib/protocol/wire-format.ts')), 'the rule of lib/protocol/wire-format.ts is bundled in')
  t.same(map.sources.filter(source => !/lib\/(client\/[a-z-]+|protocol\/wire-format)\.ts$/.test(source)), [], 'and no other module of the server')

  // As a page imports it: from the text alone (without the link, which a data: URL cannot resolve).
  const alone = script.replace(/^\/\/# sourceMappingURL=.*$/m, '')
  const bundled = await import(`data:text/javascript,${encodeURIComponent(alone)}`) as typeof ClientModule
  t.equal(typeof bundled.CometClient, 'function')
  t.equal(new bundled.CometClientError('message', 'CODE').code, 'CODE')
})
