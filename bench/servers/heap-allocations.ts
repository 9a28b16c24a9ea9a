// A running count of the bytes a process allocated on the V8 heap, for the bench's "bytes
// allocated per delivered event": what the heap holds now, minus what it held at the start, plus
// what every garbage collection since has freed (each GC's used heap before it minus after it, as
// v8.GCProfiler reports them). Forced GCs (/stats?gc=1) are counted like any other: what they free
// was allocated. Only the V8 heap: ArrayBuffers' and Buffers' memory outside it is not counted.
import { GCProfiler, getHeapStatistics } from 'node:v8'

export class HeapAllocations {
  readonly #usedAtStart = getHeapStatistics().used_heap_size
  #profiler = new GCProfiler()
  #freed = 0

  constructor () {
    this.#profiler.start()
  }

  /** Bytes allocated since this counter was made. */
  read (): number {
    // The profiler hands its GCs over only when stopped: stop it and start a fresh one at once.
    // A GC in between, sure to be rare, would go uncounted.
    const { statistics } = this.#profiler.stop()
    this.#profiler = new GCProfiler()
    this.#profiler.start()
    for (const gc of statistics) this.#freed += gc.beforeGC.heapStatistics.usedHeapSize - gc.afterGC.heapStatistics.usedHeapSize
    return getHeapStatistics().used_heap_size - this.#usedAtStart + this.#freed
  }
}
