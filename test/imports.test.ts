// What users get from npm: the tarball `npm pack` makes is installed next to Fastify in a fresh
// project, and every import form is run there by plain Node.js and type-checked by tsc, as are the
// small examples (example/*.ts, copied there), and the source maps are followed to the sources.
// Nothing is loaded from this repository, so a broken `exports`, `files` or declaration shows up here.
import { execFile, spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import { outsideTap } from './helpers.js'
import { startRedis } from './redis-server.js'

const repoRoot = fileURLToPath(new URL('..', import.meta.url))
const fixtures = fileURLToPath(new URL('fixtures/imports/', import.meta.url))
// The small examples a user copies: run in the fresh project exactly as they are in the repository.
const examples = ['minimal-server.ts', 'node-client.ts']

interface PackedFile { path: string }
interface PackResult { filename: string, files: PackedFile[] }

interface RoundTrip {
  published: { id: string }
  status: number
  body: { m?: Record<string, unknown> }
}
interface ConsumerReport {
  roundTrips: Record<string, RoundTrip>
  sameAsDefaultImport?: Record<string, boolean>
  sameAsRequire?: Record<string, boolean>
}

/**
 * Runs a command to completion and resolves to its stdout. A failure rejects with everything the
 * command printed (tsc reports on stdout, npm on stderr), since that is the diagnosis.
 * It runs outside tap's hooks, as it would for a user.
 */
function run (command: string, args: string[], cwd: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const [program, programArgs] = outsideTap(command, args)
    execFile(program, programArgs, { cwd, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024, encoding: 'utf8' }, (error, stdout, stderr) => {
      if (error === null) {
        resolve(stdout)
        return
      }
      const why = error.killed === true ? `was killed after ${timeoutMs} ms` : `failed (${error.code ?? error.signal})`
      reject(new Error(`\`${command} ${args.join(' ')}\` in ${cwd} ${why}\n--- stdout\n${stdout}\n--- stderr\n${stderr}`, { cause: error }))
    })
  })
}

/**
 * Packs this repository into `workDir` and installs the tarball, with Fastify, in a fresh project
 * there holding the consumer fixtures. Resolves to the packed paths and the project's folder.
 */
async function packAndInstall (workDir: string): Promise<{ packedPaths: string[], consumerDir: string }> {
  // prepack builds dist/ first, so the tarball holds what this checkout compiles to.
  // The build (tsc) runs inside it: on a machine busy with other tests it took over 30 s.
  const [packed] = JSON.parse(await run('npm', ['pack', '--json', '--pack-destination', workDir], repoRoot, 90_000)) as PackResult[]
  if (packed === undefined) throw new Error('npm pack --json reported no package')

  // The project's package.json has no "type", as in most projects; the fixtures' extensions
  // (.mjs/.mts, .cjs/.cts) make them ES modules or CommonJS whatever it says. Fastify is the range
  // we develop against: after `npm ci` its packages are in npm's cache, so the registry is seldom
  // needed.
  const consumerDir = join(workDir, 'consumer')
  await mkdir(consumerDir)
  await cp(fixtures, consumerDir, { recursive: true })
  await writeFile(join(consumerDir, 'package.json'), JSON.stringify({ name: 'fastify-comet-consumer', private: true }))
  // The examples are ES modules with top-level await, as in a project whose package.json says so.
  await mkdir(join(consumerDir, 'examples'))
  await writeFile(join(consumerDir, 'examples', 'package.json'), JSON.stringify({ type: 'module' }))
  for (const example of examples) await cp(join(repoRoot, 'example', example), join(consumerDir, 'examples', example))
  // prom-client and ioredis are optional peer dependencies: a user of the helper or the Redis
  // engine installs them. tsx runs the TypeScript examples, as their first lines say.
  const { devDependencies } = JSON.parse(await readFile(join(repoRoot, 'package.json'), 'utf8')) as { devDependencies: { fastify: string, ioredis: string, 'prom-client': string, tsx: string } }
  await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', join(workDir, packed.filename), `fastify@${devDependencies.fastify}`,
    `prom-client@${devDependencies['prom-client']}`, `ioredis@${devDependencies.ioredis}`, `tsx@${devDependencies.tsx}`], consumerDir, 60_000)

  return { packedPaths: packed.files.map(file => file.path), consumerDir }
}

// Packing (with its build), installing and four consumers: more than .taprc's 120 s when the
// machine is busy. Set on the root test, this is the whole file's timeout.
t.setTimeout(240_000)

const workDir = await mkdtemp(join(tmpdir(), 'fastify-comet-imports-'))
t.teardown(() => rm(workDir, { recursive: true, force: true }))
const { packedPaths, consumerDir } = await packAndInstall(workDir).catch(async (error: unknown) => {
  // A rejection here ends the process before tap runs its teardowns.
  await rm(workDir, { recursive: true, force: true })
  throw error
})

/** Runs one consumer script with the Node.js that runs the tests and parses the JSON it prints. */
async function runConsumer (script: string, args: string[] = []): Promise<ConsumerReport> {
  return JSON.parse(await run(process.execPath, [script, ...args], consumerDir, 30_000)) as ConsumerReport
}

function deliversThePublishedEvent (t: Test, report: ConsumerReport, forms: string[], data: unknown = { hello: 'world' }): void {
  t.same(Object.keys(report.roundTrips), forms, 'every form was tried')
  for (const [form, { published, status, body }] of Object.entries(report.roundTrips)) {
    t.equal(status, 200, `${form}: the subscribe succeeds`)
    t.same(body.m, { room: [{ id: published.id, data }] }, `${form}: the subscribe delivers the event fastify.comet.publish() made`)
  }
}

t.test('the tarball holds the built library, its declarations and the sources its maps point at, and no tests or examples', async t => {
  t.ok(packedPaths.includes('dist/plugin.js'), 'dist/plugin.js is packed')
  t.ok(packedPaths.includes('dist/plugin.d.ts'), 'dist/plugin.d.ts is packed')
  t.ok(packedPaths.includes('dist/lib/client/client.js'), 'the compiled client is packed, to be served')
  t.ok(packedPaths.includes('dist/lib/client/client.d.ts'), 'and its declarations')
  t.ok(packedPaths.includes('dist/lib/prometheus.js') && packedPaths.includes('dist/lib/prometheus.d.ts'), 'the Prometheus helper and its declarations')
  for (const script of ['meta.lua', 'publish.lua', 'read.lua']) t.ok(packedPaths.includes(`dist/lib/engines/redis/${script}`), `the Redis engine's ${script} is packed`)
  t.same(packedPaths.filter(path => /^(test|bench|example)\//.test(path)), [], 'no tests, benchmarks or examples')
  t.same(packedPaths.filter(path => /\.[cm]?ts$/.test(path) && !/\.d\.[cm]?ts$/.test(path) && !/^(plugin\.ts|lib\/)/.test(path)), [],
    'no TypeScript but the library\'s sources')
  t.ok(packedPaths.includes('plugin.ts') && packedPaths.includes('lib/options.ts'), 'the sources are packed')
})

t.test('every source map in the tarball belongs to a packed script and points at packed sources', async t => {
  const installed = join(consumerDir, 'node_modules', 'fastify-comet')
  const maps = packedPaths.filter(path => path.endsWith('.js.map'))
  t.ok(maps.length > 0, 'maps are shipped')
  const unresolved: string[] = []
  for (const script of packedPaths.filter(path => path.endsWith('.js'))) {
    const link = /^\/\/# sourceMappingURL=(.+)$/m.exec(await readFile(join(installed, script), 'utf8'))?.[1]
    if (link !== undefined && !packedPaths.includes(join(dirname(script), link))) unresolved.push(`${script} links to ${link}`)
  }
  for (const map of maps) {
    const { sources, sourceRoot = '' } = JSON.parse(await readFile(join(installed, map), 'utf8')) as { sources: string[], sourceRoot?: string }
    for (const source of sources) {
      const path = join(dirname(map), sourceRoot, source)
      if (!packedPaths.includes(path)) unresolved.push(`${map} points at ${source} (${path})`)
    }
  }
  t.same(unresolved, [], 'every link and every source resolves inside the package')
})

t.test('with --enable-source-maps, an error from the plugin is reported at the line of the shipped TypeScript that made it', async t => {
  const { code, stack } = JSON.parse(await run(process.execPath, ['--enable-source-maps', 'source-map-consumer.mjs'], consumerDir, 30_000)) as { code: string, stack: string }
  t.equal(code, 'FST_COMET_INVALID_OPTION')
  const frames = [...stack.matchAll(/\((\/[^)]+node_modules\/fastify-comet\/[^)]+):(\d+):(\d+)\)/g)]
  t.ok(frames.length > 0, 'the stack has frames in the package', { stack })
  for (const [, file = ''] of frames) {
    t.match(relative(join(consumerDir, 'node_modules', 'fastify-comet'), file), /^(plugin|lib\/.+)\.ts$/, 'the frame is in a source, not in dist/')
    t.ok(existsSync(file), `${file} is installed`)
  }
  const [, file = '', line = '0', column = '0'] = frames[0] ?? []
  const made = (await readFile(file, 'utf8')).split('\n')[Number(line) - 1]?.slice(Number(column) - 1)
  t.match(made, /^new errors\.FST_COMET_INVALID_OPTION\(/, 'the first frame is where the error is made, in the shipped file')
})

t.test('an ES module imports the plugin as the default export or as { fastifyComet }', async t => {
  const report = await runConsumer('esm-consumer.mjs')
  deliversThePublishedEvent(t, report, ['import comet', 'import { fastifyComet }'])
  t.same(report.sameAsDefaultImport, {
    'import { fastifyComet }': true,
    "require('fastify-comet')": true
  }, 'every form is the one plugin function')
})

t.test('CommonJS requires the plugin itself, or its .default or .fastifyComet', async t => {
  const report = await runConsumer('cjs-consumer.cjs')
  deliversThePublishedEvent(t, report, [
    "require('fastify-comet')",
    "require('fastify-comet').default",
    "require('fastify-comet').fastifyComet"
  ])
  t.same(report.sameAsRequire, {
    "require('fastify-comet').default": true,
    "require('fastify-comet').fastifyComet": true,
    "(await import('fastify-comet')).default": true,
    "require('fastify-comet').errors": true,
    "require('fastify-comet').MemoryEngine": true,
    "require('fastify-comet').fromNow": true
  }, 'every form is the one plugin function, and the other exports come along with require()')
})

t.test('the client works from fastify-comet/client, by import and require(), and as the served script', async t => {
  const report = JSON.parse(await run(process.execPath, ['client-consumer.mjs'], consumerDir, 30_000)) as { received: Record<string, unknown>, servedScriptHasSourceMapLink: boolean }
  t.same(report.received, {
    "import 'fastify-comet/client'": { hello: 'client' },
    "require('fastify-comet/client')": { hello: 'client' },
    '/comet/client.js': { hello: 'client' }
  })
  t.equal(report.servedScriptHasSourceMapLink, false, 'the served script is the compiled one, without its source map link')
})

t.test('fastify-comet/prometheus registers the metrics; prom-client is loaded only by that import', async t => {
  const report = JSON.parse(await run(process.execPath, ['prometheus-consumer.mjs'], consumerDir, 30_000)) as Record<string, boolean>
  t.same(report, { loadedWithThePlugin: false, loadedWithTheHelper: true, published: true })
})

t.test('the Redis engine works from fastify-comet/redis, by import and require()', async t => {
  const redis = await startRedis(t)
  const report = await runConsumer('redis-consumer.mjs', [redis.url])
  deliversThePublishedEvent(t, report, ["import { RedisEngine } from 'fastify-comet/redis'", "require('fastify-comet/redis').RedisEngine"], { hello: 'redis' })
  t.same(report.sameAsRequire, { RedisEngine: true }, 'one class')
})

/** A process of the fresh project, outside tap's hooks, killed when the test ends if it still runs. */
function startInConsumer (t: Test, args: string[], env: NodeJS.ProcessEnv = {}): { stdout: () => string, stderr: () => string, printed: (what: RegExp, stream?: 'stdout' | 'stderr') => Promise<RegExpExecArray>, stop: () => Promise<number | null> } {
  const child = spawn(...outsideTap(process.execPath, args), { cwd: consumerDir, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL')
      await exited
    }
  })
  const output = { stdout: '', stderr: '' }
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => { output.stdout += chunk })
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => { output.stderr += chunk })
  return {
    stdout: () => output.stdout,
    stderr: () => output.stderr,
    // Asked every 20 ms, for at most 20 s (tsx compiles the example first), or until the process ends.
    async printed (what, stream = 'stdout') {
      for (let asked = 0; asked < 1000; asked++) {
        const found = what.exec(output[stream])
        if (found !== null) return found
        if (child.exitCode !== null || child.signalCode !== null) break
        await new Promise(resolve => setTimeout(resolve, 20))
      }
      throw new Error(`${args.join(' ')} did not print ${String(what)} on ${stream}\n--- stdout\n${output.stdout}\n--- stderr\n${output.stderr}`)
    },
    async stop () {
      child.kill('SIGTERM')
      const [code] = await exited
      return code
    }
  }
}

t.test('the examples, as a user copies them: the Node.js client prints what the minimal server publishes', async t => {
  const server = startInConsumer(t, ['--import=tsx', 'examples/minimal-server.ts'], { PORT: '0', HOST: '127.0.0.1' })
  const [, origin = ''] = await server.printed(/^fastify-comet listening at (http:\/\/127\.0\.0\.1:\d+)\/comet$/m)
  const client = startInConsumer(t, ['--import=tsx', 'examples/node-client.ts', origin])
  await client.printed(/^subscribed to "news" at /m, 'stderr')

  const published = await fetch(`${origin}/news`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ text: 'from the server' }) })
  t.equal(published.status, 200, 'the server\'s own route publishes')
  t.match(await published.json(), { id: String })
  await client.printed(/^\{"text":"from the server"\}$/m)
  const forbidden = await fetch(`${origin}/comet/publish/news`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"text":"from anyone"}' })
  t.equal(forbidden.status, 403, 'the plugin\'s HTTP publish route is closed: only the server publishes')
  await forbidden.arrayBuffer()

  t.equal(await client.stop(), 0, 'the client closes on SIGTERM and its process ends by itself')
  t.equal(client.stdout(), '{"text":"from the server"}\n', 'one line per event, nothing else on stdout')
  t.equal(client.stderr(), `subscribed to "news" at ${origin}/comet\n`, 'no error on the way')
  t.equal(server.stdout(), `fastify-comet listening at ${origin}/comet\n`)
  t.equal(server.stderr(), '')
})

t.test('TypeScript types the plugin, its options and fastify.comet, from ES modules and from CommonJS, and the examples type-check', async t => {
  // The consumer has no @types/node of its own; Fastify's declarations need it, so it comes from
  // this repository, as does tsc.
  await writeFile(join(consumerDir, 'tsconfig.json'), JSON.stringify({
    compilerOptions: {
      module: 'nodenext',
      strict: true,
      noEmit: true,
      skipLibCheck: true,
      typeRoots: [join(repoRoot, 'node_modules/@types')],
      types: ['node']
    },
    files: ['esm-consumer.mts', 'cjs-consumer.cts', 'client-consumer.mts', 'redis-consumer.mts', ...examples.map(example => `examples/${example}`)]
  }))
  // Each @ts-expect-error in the consumers must meet its error, so a clean run also proves the
  // declarations were found and are not `any`.
  const diagnostics = await run(process.execPath, [join(repoRoot, 'node_modules/.bin/tsc'), '-p', 'tsconfig.json'], consumerDir, 60_000)
  t.equal(diagnostics, '', 'tsc finds no errors')
})
