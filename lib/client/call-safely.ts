// Calls an app's callback so that one that throws stops neither the client nor the other callbacks.

// Its error is thrown again outside the client, where the page's or process's error reporting sees it.
export function callSafely<A extends unknown[]> (callback: ((...args: A) => void) | undefined, ...args: A): void {
  try {
    callback?.(...args)
  } catch (error) {
    queueMicrotask(() => { throw error })
  }
}
