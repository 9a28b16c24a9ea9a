// The Redis engine's heartbeat: a PING on each connection it relies on, every interval. A Redis that
// stops answering but keeps its TCP connection open (a partition, a stopped process) is found
// within two intervals, instead of when the operating system or ioredis gives up on the socket.
import type { Redis } from 'ioredis'

export interface HeartbeatTarget {
  /** Names the connection: 'host:port' of a Cluster node, as in the client's slot table. */
  readonly key: string
  readonly client: Redis
}

export class Heartbeat {
  readonly #targets: () => readonly HeartbeatTarget[]
  readonly #onStuck: (key: string) => void
  readonly #onAnswered: (key: string) => void
  /** PINGs sent and not answered, by connection. */
  readonly #pending = new Map<string, Redis>()
  readonly #stuck = new Set<string>()
  readonly #timer: NodeJS.Timeout

  /**
   * @param targets the connections to check, asked at each beat (a Cluster's masters change)
   * @param onStuck a connection left a PING unanswered for a whole interval
   * @param onAnswered a connection that was stuck answered again
   */
  constructor (intervalMs: number, targets: () => readonly HeartbeatTarget[], onStuck: (key: string) => void, onAnswered: (key: string) => void) {
    this.#targets = targets
    this.#onStuck = onStuck
    this.#onAnswered = onAnswered
    this.#timer = setInterval(() => this.#beat(), intervalMs).unref()
  }

  /** True while the connection left its last PING unanswered for a whole interval. */
  isStuck (key: string): boolean {
    return this.#stuck.has(key)
  }

  get anyStuck (): boolean {
    return this.#stuck.size > 0
  }

  stop (): void {
    clearInterval(this.#timer)
  }

  #beat (): void {
    for (const { key, client } of this.#targets()) {
      if (this.#pending.get(key) === client) {
        if (!this.#stuck.has(key)) {
          this.#stuck.add(key)
          this.#onStuck(key)
        }
        continue
      }
      // A connection that is down fails the PING at once (no offline queue): its state tells.
      if (client.status !== 'ready') continue
      this.#pending.set(key, client)
      client.ping().then(() => {
        if (this.#pending.get(key) === client) this.#pending.delete(key)
        if (this.#stuck.delete(key)) this.#onAnswered(key)
      }, () => {
        if (this.#pending.get(key) === client) this.#pending.delete(key)
      })
    }
  }
}
