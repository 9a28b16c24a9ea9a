// A private sharded Redis Cluster for the tests: three masters with a replica each, on free ports
// of 127.0.0.1, with a short node timeout so that a failover takes about a second. Every node is a
// redis-server this module started, stopped by its pid when the test ends.
import { spawn, execFile, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import calculateSlot from 'cluster-key-slot'
import { Cluster, Redis } from 'ioredis'
import type { Test } from 'tap'
import { freePort } from './redis-server.js'

const run = promisify(execFile)

/** Milliseconds before a silent node is taken for failed and its replica may be promoted. */
export const clusterNodeTimeoutMs = 500

export interface ClusterNode {
  readonly port: number
  readonly pid: number
  /** SIGKILL: a crash. Resolves when the process has exited. */
  crash (): Promise<void>
  /** SIGSTOP: connections stay open, and nothing is answered. */
  suspend (): void
  /** SIGCONT after suspend(). */
  resume (): void
}

export interface RedisCluster {
  readonly nodes: readonly ClusterNode[]
  /** Ports of the masters now, by CLUSTER SHARDS asked of a live node. */
  masters (): Promise<Array<{ port: number, slots: Array<[number, number]> }>>
  /** The master port that serves a slot now. */
  masterOf (slot: number): Promise<number>
  /** A new ioredis Cluster client (closed at the end of the test) with these options. */
  client (options?: ConstructorParameters<typeof Cluster>[1]): Cluster
  /** Resolves when every live node says cluster_state:ok and they agree on the masters. */
  settled (timeoutMs?: number): Promise<void>
}

/** Channel names whose slots fall in each of the given slot ranges, `perRange` of each, named `<stem><n>`. */
export function channelsIn (ranges: ReadonlyArray<ReadonlyArray<[number, number]>>, perRange: number, stem = 'ch'): string[][] {
  const found: string[][] = ranges.map(() => [])
  for (let n = 0; found.some(list => list.length < perRange) && n < 100_000; n++) {
    const name = `${stem}${n}`
    const slot = calculateSlot(name)
    const shard = ranges.findIndex(slots => slots.some(([from, to]) => slot >= from && slot <= to))
    if (shard !== -1 && (found[shard] as string[]).length < perRange) (found[shard] as string[]).push(name)
  }
  return found
}

/** With `nodeTimeoutMs`, masters that stop answering for less than that are not failed over. */
/** Two channel names in one hash slot (their keys share it too: the channel is the hash tag). */
export function twoInOneSlot (stem = 'same'): [string, string] {
  const seen = new Map<number, string>()
  for (let n = 0; ; n++) {
    const name = `${stem}${n}`
    const other = seen.get(calculateSlot(name))
    if (other !== undefined) return [other, name]
    seen.set(calculateSlot(name), name)
  }
}

export async function startCluster (t: Test, { nodeTimeoutMs = clusterNodeTimeoutMs } = {}): Promise<RedisCluster> {
  const dir = await mkdtemp(join(tmpdir(), 'fastify-comet-cluster-'))
  const children: ChildProcess[] = []
  const clients: Array<Redis | Cluster> = []
  t.teardown(async () => {
    for (const client of clients) client.disconnect()
    for (const child of children) {
      if (child.exitCode !== null || child.signalCode !== null) continue
      const exited = once(child, 'exit')
      child.kill('SIGCONT')
      child.kill('SIGKILL')
      await exited
    }
    await rm(dir, { recursive: true, force: true })
  })

  // Should a teardown fail before the one above runs, the nodes still die with the test process.
  const killAll = (): void => { for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') }
  process.once('exit', killAll)
  t.teardown(() => { process.removeListener('exit', killAll) })

  const ports: number[] = []
  while (ports.length < 6) {
    const port = await freePort()
    // The cluster bus listens on port + 10000: both must be free, and distinct from the others.
    if (port + 10000 < 65536 && !ports.some(p => Math.abs(p - port) < 2)) ports.push(port)
  }
  const nodes = await Promise.all(ports.map(async port => {
    const child = spawn('redis-server', [
      '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
      '--dir', dir, '--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`,
      '--cluster-node-timeout', String(nodeTimeoutMs),
      // A replica may always be promoted, however long ago it heard from its master.
      '--cluster-replica-validity-factor', '0'
    ], { stdio: ['ignore', 'pipe', 'inherit'] })
    children.push(child)
    let output = ''
    await new Promise<void>((resolve, reject) => {
      child.stdout?.on('data', (chunk: Buffer) => {
        output += chunk.toString()
        if (output.includes('Ready to accept connections')) resolve()
      })
      child.once('exit', code => reject(new Error(`redis-server exited (${code}) before it was ready:\n${output}`)))
    })
    child.stdout?.resume()
    const node: ClusterNode = {
      port,
      pid: child.pid as number,
      async crash () {
        if (child.exitCode !== null || child.signalCode !== null) return
        const exited = once(child, 'exit')
        child.kill('SIGKILL')
        await exited
      },
      suspend () { child.kill('SIGSTOP') },
      resume () { child.kill('SIGCONT') }
    }
    return node
  }))
  await run('redis-cli', ['--cluster', 'create', ...ports.map(p => `127.0.0.1:${p}`), '--cluster-replicas', '1', '--cluster-yes'])

  const live = (): ClusterNode[] => nodes.filter((_, i) => {
    const child = children[i] as ChildProcess
    return child.exitCode === null && child.signalCode === null
  })
  async function ask<T> (port: number, ...args: string[]): Promise<T> {
    const admin = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, commandTimeout: 1000 })
    admin.on('error', () => {})
    try {
      await admin.connect()
      return await admin.call(...args as [string, ...string[]]) as T
    } finally {
      admin.disconnect()
    }
  }
  async function masters (): Promise<Array<{ port: number, slots: Array<[number, number]> }>> {
    for (const node of live()) {
      try {
        const shards = await ask<unknown[][]>(node.port, 'CLUSTER', 'SHARDS')
        const found: Array<{ port: number, slots: Array<[number, number]> }> = []
        for (const shard of shards) {
          const fields = asRecord(shard)
          const slots = fields.slots as number[]
          if (slots.length === 0) continue
          const master = (fields.nodes as unknown[][]).map(asRecord).find(n => n.role === 'master' && n.health === 'online')
          if (master === undefined) continue
          const ranges: Array<[number, number]> = []
          for (let i = 0; i < slots.length; i += 2) ranges.push([Number(slots[i]), Number(slots[i + 1])])
          found.push({ port: Number(master.port), slots: ranges })
        }
        return found.sort((a, b) => (a.slots[0] as [number, number])[0] - (b.slots[0] as [number, number])[0])
      } catch {}
    }
    throw new Error('no live cluster node answered CLUSTER SHARDS')
  }
  async function settled (timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      try {
        const states = await Promise.all(live().map(node => ask<string>(node.port, 'CLUSTER', 'INFO')))
        const views = await Promise.all(live().map(async node => JSON.stringify(mastersOf(await ask<string>(node.port, 'CLUSTER', 'NODES')))))
        if (states.every(info => info.includes('cluster_state:ok')) && views.every(view => view === views[0])) return
      } catch {}
      if (Date.now() > deadline) throw new Error('the cluster did not settle')
      await new Promise(resolve => setTimeout(resolve, 50))
    }
  }
  await settled()
  return {
    nodes,
    masters,
    async masterOf (slot) {
      const found = (await masters()).find(m => m.slots.some(([from, to]) => slot >= from && slot <= to))
      if (found === undefined) throw new Error(`no master serves slot ${slot}`)
      return found.port
    },
    client (options = {}) {
      const client = new Cluster(live().map(node => ({ host: '127.0.0.1', port: node.port })), options)
      client.on('error', () => {})
      clients.push(client)
      return client
    },
    settled
  }
}

// The masters that serve slots, as a node sees them in CLUSTER NODES: "<port>:<slots>" sorted.
function mastersOf (nodesText: string): string[] {
  return nodesText.trim().split('\n').map(line => line.split(' ')).filter(f => (f[2] as string).includes('master') && !(f[2] as string).includes('fail') && f.length > 8)
    .map(f => `${(f[1] as string).split('@')[0]}:${f.slice(8).join(',')}`).sort()
}

function asRecord (pairs: unknown[]): Record<string, unknown> {
  const record: Record<string, unknown> = {}
  for (let i = 0; i < pairs.length; i += 2) record[String(pairs[i])] = pairs[i + 1]
  return record
}

/**
 * Moves one slot, with its keys, from the master that serves it to another: the steps of
 * `redis-cli --cluster reshard` for one slot (IMPORTING, MIGRATING, MIGRATE the keys in batches of
 * 10 as its --cluster-pipeline default, then NODE on every master). `between` runs while the slot
 * is MIGRATING, and again after its keys have moved, before the slot is handed over.
 */
export async function migrateSlot (cluster: RedisCluster, slot: number, toPort: number, between: () => Promise<void> = async () => {}): Promise<void> {
  const fromPort = await cluster.masterOf(slot)
  const from = new Redis(fromPort, '127.0.0.1', { maxRetriesPerRequest: 0 })
  const to = new Redis(toPort, '127.0.0.1', { maxRetriesPerRequest: 0 })
  try {
    const fromId = await from.call('CLUSTER', 'MYID') as string
    const toId = await to.call('CLUSTER', 'MYID') as string
    await to.call('CLUSTER', 'SETSLOT', String(slot), 'IMPORTING', fromId)
    await from.call('CLUSTER', 'SETSLOT', String(slot), 'MIGRATING', toId)
    await between()
    for (;;) {
      const keys = await from.call('CLUSTER', 'GETKEYSINSLOT', String(slot), '10') as string[]
      if (keys.length === 0) break
      await from.call('MIGRATE', '127.0.0.1', String(toPort), '', '0', '5000', 'KEYS', ...keys)
      await between()
    }
    await to.call('CLUSTER', 'SETSLOT', String(slot), 'NODE', toId)
    await from.call('CLUSTER', 'SETSLOT', String(slot), 'NODE', toId)
    for (const master of await cluster.masters()) {
      const node = new Redis(master.port, '127.0.0.1', { maxRetriesPerRequest: 0 })
      await node.call('CLUSTER', 'SETSLOT', String(slot), 'NODE', toId).catch(() => {})
      node.disconnect()
    }
  } finally {
    from.disconnect()
    to.disconnect()
  }
}
