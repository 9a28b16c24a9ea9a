// What users get from npm: the tarball `npm pack` makes is installed next to Fastify in a fresh
// project, and every import form is run there by plain Node.js and type-checked by tsc. Nothing is
// loaded from this repository, so a broken `exports`, `files` or declaration shows up here.
import { execFile } from 'node:child_process'
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import { outsideTap } from './helpers.js'
import { startRedis } from './redis-server.js'

const repoRoot = fileURLToPath(new URL('..', import.meta.url))
const fixtures = fileURLToPath(new URL('fixtures/imports/', import.meta.url))

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
  const [packed] = JSON.parse(await run('npm', ['pack', '--json', '--pack-destination', workDir], repoRoot, 30_000)) as PackResult[]
  if (packed === undefined) throw new Error('npm pack --json reported no package')

  // The project's package.json has no "type", as in most projects; the fixtures' extensions
  // (.mjs/.mts, .cjs/.cts) make them ES modules or CommonJS whatever it says. Fastify is the range
  // we develop against: after `npm ci` its packages are in npm's cache, so the registry is seldom
  // needed.
  const consumerDir = join(workDir, 'consumer')
  await mkdir(consumerDir)
  await cp(fixtures, consumerDir, { recursive: true })
  await writeFile(join(consumerDir, 'package.json'), JSON.stringify({ name: 'fastify-comet-consumer', private: true }))
  // ioredis is an optional peer dependency: a user of the Redis engine installs it.
  const { devDependencies } = JSON.parse(await readFile(join(repoRoot, 'package.json'), 'utf8')) as { devDependencies: { fastify: string, ioredis: string } }
  await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', join(workDir, packed.filename), `fastify@${devDependencies.fastify}`, `ioredis@${devDependencies.ioredis}`], consumerDir, 60_000)

  return { packedPaths: packed.files.map(file => file.path), consumerDir }
}

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

t.test('the tarball holds the built library and its declarations, and no sources or tests', async t => {
  t.ok(packedPaths.includes('dist/plugin.js'), 'dist/plugin.js is packed')
  t.ok(packedPaths.includes('dist/plugin.d.ts'), 'dist/plugin.d.ts is packed')
  t.ok(packedPaths.includes('dist/lib/client/client.js'), 'the compiled client is packed, to be served')
  t.ok(packedPaths.includes('dist/lib/client/client.d.ts'), 'and its declarations')
  for (const script of ['meta.lua', 'publish.lua', 'read.lua']) t.ok(packedPaths.includes(`dist/lib/engines/redis/${script}`), `the Redis engine's ${script} is packed`)
  t.same(packedPaths.filter(path => path.startsWith('test/')), [], 'no test files')
  t.same(packedPaths.filter(path => /\.[cm]?ts$/.test(path) && !/\.d\.[cm]?ts$/.test(path)), [], 'no TypeScript sources')
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

t.test('the Redis engine works from fastify-comet/redis, by import and require()', async t => {
  const redis = await startRedis(t)
  const report = await runConsumer('redis-consumer.mjs', [redis.url])
  deliversThePublishedEvent(t, report, ["import { RedisEngine } from 'fastify-comet/redis'", "require('fastify-comet/redis').RedisEngine"], { hello: 'redis' })
  t.same(report.sameAsRequire, { RedisEngine: true }, 'one class')
})

t.test('TypeScript types the plugin, its options and fastify.comet, from ES modules and from CommonJS', async t => {
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
    files: ['esm-consumer.mts', 'cjs-consumer.cts', 'client-consumer.mts', 'redis-consumer.mts']
  }))
  // Each @ts-expect-error in the consumers must meet its error, so a clean run also proves the
  // declarations were found and are not `any`.
  const diagnostics = await run(process.execPath, [join(repoRoot, 'node_modules/.bin/tsc'), '-p', 'tsconfig.json'], consumerDir, 60_000)
  t.equal(diagnostics, '', 'tsc finds no errors')
})
