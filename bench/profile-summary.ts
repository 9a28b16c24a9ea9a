// Where a server's CPU went, from CPU profiles (BENCH_CPU_PROF_PHASES or BENCH_CPU_PROF), side by
// side: self time by kind of code (garbage collection, the kernel calls Node.js makes, Node.js's
// own JavaScript, Fastify, the plugin, the benchmark's server) and by function.
//
//   node --import=tsx bench/profile-summary.ts [--top=25] <a.cpuprofile> [<b.cpuprofile> …]
import { readFileSync } from 'node:fs'
import { basename } from 'node:path'

interface ProfileNode { id: number, callFrame: { functionName: string, url: string, lineNumber: number } }
interface Profile { nodes: ProfileNode[], samples: number[], timeDeltas: number[] }

/** The kind of code a function is, by where it comes from. */
function kindOf ({ functionName, url }: ProfileNode['callFrame']): string {
  if (functionName === '(garbage collector)') return 'garbage collection'
  if (functionName === '(program)') return 'V8 (program)'
  if (url.includes('/node_modules/')) return /\/node_modules\/(fastify|@fastify|find-my-way|avvio|ajv|fast-querystring|fast-uri|fast-json-stringify|light-my-request)\//.test(url) ? 'Fastify' : 'other packages'
  if (/\/(lib\/|plugin\.ts)/.test(url)) return 'fastify-comet'
  if (url.includes('/bench/')) return 'benchmark server'
  if (url.startsWith('node:')) return 'Node.js (JavaScript)'
  return 'native (writev, parser, …)'
}

function summarize (file: string): { total: number, kinds: Map<string, number>, functions: Map<string, number> } {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile
  const nodes = new Map(profile.nodes.map(node => [node.id, node]))
  const kinds = new Map<string, number>()
  const functions = new Map<string, number>()
  let total = 0
  profile.samples.forEach((id, i) => {
    const { callFrame } = nodes.get(id) as ProfileNode
    if (callFrame.functionName === '(idle)') return
    const us = profile.timeDeltas[i] ?? 0
    const kind = kindOf(callFrame)
    const name = `${callFrame.functionName || '(anonymous)'} ${callFrame.url.replace(/^.*\/(node_modules|lib|bench)\//, '$1/')}:${callFrame.lineNumber + 1}`
    kinds.set(kind, (kinds.get(kind) ?? 0) + us)
    functions.set(name, (functions.get(name) ?? 0) + us)
    total += us
  })
  return { total, kinds, functions }
}

const top = Number(process.argv.find(a => a.startsWith('--top='))?.slice(6) ?? 25)
const files = process.argv.slice(2).filter(a => !a.startsWith('--'))
const summaries = files.map(summarize)
const ms = (us: number | undefined): string => ((us ?? 0) / 1000).toFixed(1).padStart(9)
process.stdout.write(`${'ms of CPU'.padEnd(28)}${files.map(f => basename(f).slice(0, 24).padStart(26)).join('')}\n`)
const kinds = [...new Set(summaries.flatMap(s => [...s.kinds.keys()]))].sort()
for (const kind of ['total', ...kinds]) {
  process.stdout.write(`${kind.padEnd(28)}${summaries.map(s => `${ms(kind === 'total' ? s.total : s.kinds.get(kind))} (${(100 * (kind === 'total' ? s.total : s.kinds.get(kind) ?? 0) / s.total).toFixed(0).padStart(3)}%)`.padStart(26)).join('')}\n`)
}
summaries.forEach((summary, i) => {
  process.stdout.write(`\n${basename(files[i] as string)}: top ${top} functions by self time\n`)
  for (const [name, us] of [...summary.functions].sort((a, b) => b[1] - a[1]).slice(0, top)) process.stdout.write(`${ms(us)} ms  ${name}\n`)
})
