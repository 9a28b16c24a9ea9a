// faye ships no types; the benchmark uses only this much of it.
declare module 'faye' {
  import type { Server } from 'node:http'

  export interface FayeClient {
    publish (channel: string, data: unknown): unknown
  }

  export class NodeAdapter {
    constructor (options: { mount: string, timeout?: number })
    attach (server: Server): void
    getClient (): FayeClient
  }

  const faye: { NodeAdapter: typeof NodeAdapter }
  export default faye
}
