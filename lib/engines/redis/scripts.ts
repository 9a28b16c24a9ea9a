// The Lua scripts of the Redis engine, read once from the .lua files beside this module (the build
// copies them into dist/), and run by their SHA1, sending the source only when Redis lacks it.
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { Cluster, Redis } from 'ioredis'

export interface LuaScript {
  readonly source: string
  readonly sha: string
}

function load (name: string): LuaScript {
  // meta.lua holds what both scripts share; Lua in Redis has no require.
  const source = ['meta.lua', name].map(file => readFileSync(new URL(file, import.meta.url), 'utf8')).join('\n')
  return { source, sha: createHash('sha1').update(source).digest('hex') }
}

export const publishScript = load('publish.lua')
export const readScript = load('read.lua')
export const presenceScript = load('presence.lua')

/** EVALSHA, and EVAL once when Redis does not know the script (its script cache is empty after a restart). */
export async function runScript (client: Redis | Cluster, script: LuaScript, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
  try {
    return await client.evalsha(script.sha, keys.length, ...keys, ...args)
  } catch (error) {
    if (!(error as Error).message.startsWith('NOSCRIPT')) throw error
    return await client.eval(script.source, keys.length, ...keys, ...args)
  }
}
