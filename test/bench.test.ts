// The benchmark harness (`npm run bench`) in quick mode, as a smoke test that it works: every
// contender and scenario is measured, the figures are numbers, each has its ratio to the floor and
// to protocol-floor, and no contender that keeps history loses an event. No assertion on timings: they are the
// harness's output, not a property of the code.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { outsideTap } from './helpers.js'

const repoRoot = fileURLToPath(new URL('..', import.meta.url))

interface Report {
  meta: { mode: string, sizes: number[] }
  records: Array<{
    size: number
    contender: string
    figures: Record<string, Record<string, number> | undefined>
    ratios: Record<string, Record<string, number | null> | undefined>
    ratiosToProtocol: Record<string, Record<string, number | null> | undefined>
    failures: string[]
  }>
  targets: Array<{ target: string, value: number | null }>
}

const contenders = ['floor', 'fastify-floor', 'protocol-floor', 'fastify-comet', 'fastify-comet-metrics', 'file-polling', 'faye', 'socket.io', 'fastify-comet-redis-x2', 'sse-floor', 'fastify-comet-sse']
// Events these keep until each subscriber has them; the floors and file polling keep only the latest.
const keepHistory = ['fastify-comet', 'fastify-comet-metrics', 'faye', 'socket.io', 'fastify-comet-redis-x2', 'fastify-comet-sse']
const figureNames = {
  fanout: ['fanoutMs', 'fanoutMaxMs', 'latencyP50Ms', 'latencyP99Ms', 'cpuPerEventUs', 'allocatedPerEventBytes', 'lost', 'duplicated', 'errors'],
  cost: ['rssPerSubscriberKB', 'heapPerSubscriberKB', 'idleCpuPercent'],
  throughput: ['deliveriesPerSecond', 'cpuPerEventUs', 'allocatedPerEventBytes', 'serverCpuPercent', 'latencyP50Ms', 'latencyP99Ms', 'lost', 'duplicated', 'errors']
}
// Figures whose floor value may be 0, so that their ratio is null.
const mayHaveNoRatio = ['lost', 'duplicated', 'errors', 'idleCpuPercent', 'heapPerSubscriberKB', 'rssPerSubscriberKB']

// Nineteen runs (three of them with two server processes and a redis-server), one after the other,
// on a machine running other tests. Set on the root test, the timeout is the whole file's, past
// the 120 s of .taprc (a subtest's own timeout does not stop the runner from killing the file).
t.setTimeout(450_000)

t.test('npm run bench -- --quick measures every contender in every scenario, with ratios to the floor and to protocol-floor', async t => {
  const directory = mkdtempSync(join(tmpdir(), 'comet-bench-test-'))
  t.teardown(() => rmSync(directory, { recursive: true, force: true }))
  const out = join(directory, 'quick.json')

  const run = spawn(...outsideTap(process.execPath, ['--import=tsx', 'bench/run.ts', '--quick', `--out=${out}`]), {
    cwd: repoRoot,
    stdio: ['ignore', 'pipe', 'pipe']
  })
  t.teardown(() => { run.kill('SIGKILL') })
  let output = ''
  run.stdout.setEncoding('utf8').on('data', (chunk: string) => { output += chunk })
  run.stderr.setEncoding('utf8').on('data', (chunk: string) => { output += chunk })
  const [code] = await once(run, 'exit')
  t.equal(code, 0, 'the harness exits with 0', { output })

  const report = JSON.parse(readFileSync(out, 'utf8')) as Report
  t.equal(report.meta.mode, 'quick')
  t.match(output, /fan-out and cost/, 'the table is printed')
  const [size] = report.meta.sizes
  t.type(size, 'number')
  t.same(report.records.map(r => r.contender).sort(), [...contenders].sort(), 'every contender is measured')

  for (const record of report.records) {
    t.same(record.failures, [], `${record.contender}: no failures`)
    for (const [group, names] of Object.entries(figureNames)) {
      const figures = record.figures[group]
      const ratios = record.ratios[group]
      const toProtocol = record.ratiosToProtocol[group]
      if (figures === undefined || ratios === undefined || toProtocol === undefined) {
        t.fail(`${record.contender}: no ${group} figures`)
        continue
      }
      for (const name of names) {
        t.ok(Number.isFinite(figures[name]), `${record.contender} ${group}.${name} is a number`, { value: figures[name] })
        const ratio = ratios[name]
        const ratioToProtocol = toProtocol[name]
        if (mayHaveNoRatio.includes(name)) {
          t.ok(ratio === null || Number.isFinite(ratio), `${record.contender} ${group}.${name} ratio`)
          t.ok(ratioToProtocol === null || Number.isFinite(ratioToProtocol), `${record.contender} ${group}.${name} ratio to protocol-floor`)
        } else {
          t.ok(Number.isFinite(ratio) && (ratio as number) > 0, `${record.contender} ${group}.${name} has a ratio to the floor`, { ratio })
          t.ok(Number.isFinite(ratioToProtocol) && (ratioToProtocol as number) > 0, `${record.contender} ${group}.${name} has a ratio to protocol-floor`, { ratioToProtocol })
        }
      }
    }
    for (const group of ['fanout', 'throughput']) {
      t.ok((record.figures[group]?.allocatedPerEventBytes ?? 0) > 0, `${record.contender} ${group}: bytes allocated per event are counted`)
    }
    if (record.contender === 'floor') t.equal(record.ratios.fanout?.cpuPerEventUs, 1, 'the floor is its own unit')
    if (record.contender === 'protocol-floor') t.equal(record.ratiosToProtocol.throughput?.cpuPerEventUs, 1, 'protocol-floor is its own unit')
    t.equal(record.figures.fanout?.lost, 0, `${record.contender}: no event lost in the fan-out`)
    t.equal(record.figures.fanout?.duplicated, 0, `${record.contender}: no event repeated in the fan-out`)
    if (keepHistory.includes(record.contender)) {
      t.equal(record.figures.throughput?.lost, 0, `${record.contender}: no event lost in the throughput run`)
      t.equal(record.figures.throughput?.duplicated, 0, `${record.contender}: no event repeated in the throughput run`)
    }
  }
  t.ok(report.targets.length > 0 && report.targets.every(target => typeof target.target === 'string'), 'the targets are checked')

  // On Redis: its CPU and commands are counted, and the restart scenario ran and reported gaps.
  const redis = report.records.find(record => record.contender === 'fastify-comet-redis-x2')
  for (const group of ['fanout', 'throughput']) {
    const figures = redis?.figures[group]
    t.ok((figures?.redisCommandsPerPublish ?? 0) >= 1, `fastify-comet-redis-x2 ${group}: Redis commands per publish are counted`, { figures })
    t.ok((figures?.redisScriptsPerPublish ?? 0) >= 1, `fastify-comet-redis-x2 ${group}: scripts per publish are counted`)
    t.ok((figures?.redisCpuPerEventUs ?? 0) > 0, `fastify-comet-redis-x2 ${group}: redis-server's CPU is counted`)
  }
  const restart = redis?.figures.restart
  t.ok(restart !== undefined && restart.errors === 0, 'the throughput run across a Redis restart completed', { restart })
  t.ok((restart?.gaps ?? 0) > 0, 'subscribers were told of the gap the restart made', { restart })
  for (const name of ['lost', 'lostWithGap', 'duplicated', 'publishFailures']) t.ok(Number.isFinite(restart?.[name]), `restart ${name} is counted`)
  t.match(output, /across a Redis restart/, 'the Redis tables are printed')
})
