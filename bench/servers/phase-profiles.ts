// CPU profiles of a server process cut at every /stats read (BENCH_CPU_PROF_PHASES=<dir>): the
// driver reads the stats at the start and end of each measured phase, so each phase gets a profile
// of its own, free of start-up, connection set-up and shutdown. bench/profile-summary.ts reads them.
import { writeFileSync } from 'node:fs'
import { Session } from 'node:inspector/promises'
import { basename, join } from 'node:path'

export class PhaseProfiles {
  readonly #session = new Session()
  readonly #directory: string
  #span = 0

  constructor (directory: string) {
    this.#directory = directory
  }

  async start (): Promise<void> {
    this.#session.connect()
    await this.#session.post('Profiler.enable')
    // Finer than --cpu-prof's 1 ms: a phase lasts seconds, and a delivery a few microseconds.
    await this.#session.post('Profiler.setSamplingInterval', { interval: 100 })
    await this.#session.post('Profiler.start')
  }

  /** Ends the span since the last cut, writes its profile, and starts the next. */
  async cut (): Promise<void> {
    const { profile } = await this.#session.post('Profiler.stop')
    const name = `${basename(process.argv[1] ?? 'server', '.ts')}-${process.pid}-${String(++this.#span).padStart(2, '0')}.cpuprofile`
    writeFileSync(join(this.#directory, name), JSON.stringify(profile))
    await this.#session.post('Profiler.start')
  }
}
