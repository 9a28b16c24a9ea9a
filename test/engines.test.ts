// The Node.js versions package.json declares, against what every package of the lockfile asks for:
// `npm install` on a fresh clone prints EBADENGINE for any package whose `engines.node` leaves out
// the running Node.js, so each must accept the oldest of every release line we declare.
import { readFile } from 'node:fs/promises'
import semver from 'semver'
import t from 'tap'

interface Manifest { engines?: { node?: string } }
const packageJson = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as Manifest
const lockfile = JSON.parse(await readFile(new URL('../package-lock.json', import.meta.url), 'utf8')) as { packages: Record<string, Manifest & { version?: string }> }
const declared = packageJson.engines?.node ?? ''

// The oldest version of each range we declare (20.19.0, 22.12.0), the first of each later line up to
// the newest, and the Node.js running the tests.
const oldest = new semver.Range(declared).set.map(comparators => semver.minVersion(comparators.map(c => c.value).join(' '))?.version ?? '')
const laterLines = [23, 24, 25, 26].map(major => `${major}.0.0`).filter(version => semver.satisfies(version, declared))
const nodeVersions = [...oldest, ...laterLines, process.version]

t.test('package.json declares the Node.js versions that can require() the package: ^20.19.0 || >=22.12.0', async t => {
  // require(esm), which `require('fastify-comet')` needs, is on by default from 20.19 and 22.12.
  t.equal(declared, '^20.19.0 || >=22.12.0')
  t.ok(semver.satisfies(process.version, declared), `the tests run on a declared version (${process.version})`)
  t.same(oldest, ['20.19.0', '22.12.0'])
})

t.test('every package the lockfile installs accepts every Node.js version declared, so npm install prints no EBADENGINE', async t => {
  const refusing: string[] = []
  for (const [path, { engines, version }] of Object.entries(lockfile.packages)) {
    const range = engines?.node
    if (path === '' || range === undefined) continue
    for (const node of nodeVersions) {
      if (!semver.satisfies(node, range)) refusing.push(`${path.replace(/^.*node_modules\//, '')}@${version ?? '?'} wants node ${range}, not ${node}`)
    }
  }
  t.same(refusing, [], 'choose a version that supports them (npm view <package> engines), or declare what is really needed')
})
