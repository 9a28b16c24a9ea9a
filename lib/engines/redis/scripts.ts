// The Lua scripts of the Redis engine, read once from the .lua files beside this module (the build
// copies them into dist/), and run by their SHA1, sending the source only when Redis lacks it.
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { Cluster, Redis } from 'ioredis'

export interface LuaScript {
  readonly source: string
  readonly sha: string
}

function read (file: string): string {
  return readFileSync(new URL(file, import.meta.url), 'utf8')
}

function script (source: string): LuaScript {
  return { source, sha: createHash('sha1').update(source).digest('hex') }
}

// meta.lua holds what the scripts share; Lua in Redis has no require.
export const publishScript = script([read('meta.lua'), read('publish.lua')].join('\n'))
export const readScript = script([read('meta.lua'), read('read.lua')].join('\n'))
export const presenceScript = script([read('meta.lua'), read('presence.lua')].join('\n'))
// A keyed publish runs the very publish.lua of a publish without a key, as a function that
// idempotency.lua calls when the key is new, so the two can never drift apart.
export const publishIdempotentScript = script([read('meta.lua'), 'local function publish_event ()', read('publish.lua'), 'end', read('idempotency.lua')].join('\n'))

/** EVALSHA, and EVAL once when Redis does not know the script (its script cache is empty after a restart). */
export async function runScript (client: Redis | Cluster, script: LuaScript, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
  try {
    return await client.evalsha(script.sha, keys.length, ...keys, ...args)
  } catch (error) {
    if (!(error as Error).message.startsWith('NOSCRIPT')) throw error
    return await client.eval(script.source, keys.length, ...keys, ...args)
  }
}
