// How a failure shows: what it means and what to check, in words, and a console warning for each
// distinct failure when the app has no onError to hear it.
import { CometClientError, isRefusal } from './errors.js'

/** What a failure of the polls at `base` means, and what to check. */
export function explainFailure (error: Error, base: URL, maxDelay: number): string {
  const subscribe = new URL('subscribe', base).href
  if (!(error instanceof CometClientError)) {
    const cause = (error.cause as { code?: unknown } | undefined)?.code
    const why = `${error.name}: ${error.message}${typeof cause === 'string' ? ` (${cause})` : ''}`
    return `fastify-comet client: no answer from ${base.href} (${why}); is the server running, and is url right? The client retries with backoff.`
  }
  const answer = `${String(error.statusCode)} ${error.code}: ${error.message}`
  const slowly = `Subscriptions not yet ready reject with FST_COMET_CLIENT_REFUSED; the client asks again every ${maxDelay} ms, and is connected once the server answers.`
  if (isRefusal(error)) {
    if (error.statusCode === 404) {
      return `fastify-comet client: no fastify-comet at ${base.href}: GET ${subscribe} answered 404. Is url the plugin's prefix ('/comet' unless its prefix option says otherwise), such as '${new URL('/comet', base).href}'? ${slowly}`
    }
    if (error.code === 'FST_COMET_FORBIDDEN') {
      return `fastify-comet client: the server refused the subscription (${answer}): the plugin's authorizeSubscribe said no. Check what it asks of a request (a cookie or a header, which the fetch option can add). ${slowly}`
    }
    return `fastify-comet client: the server refused the subscription (${answer}); asking again gets the same answer until something changes. ${slowly}`
  }
  if (error.code === 'FST_COMET_CLIENT_BAD_REPLY') {
    return `fastify-comet client: the answer of ${subscribe} is not a poll reply: is url the plugin's prefix ('/comet' unless its prefix option says otherwise), such as '${new URL('/comet', base).href}'? The client retries with backoff.`
  }
  // The client's own errors (a poll the watchdog gave up on) say it all.
  if (error.statusCode === undefined) return error.message
  return `fastify-comet client: the server answered ${answer}; the client retries with backoff.`
}

/**
 * Warns once for each distinct failure: a failure repeated at every retry is one warning, not one a
 * retry. Once the server answers, a failure after that is news again.
 */
export class FailureWarnings {
  readonly #shown = new Set<string>()

  warn (error: Error, base: URL, maxDelay: number): void {
    const kind = error instanceof CometClientError ? `${error.code} ${String(error.statusCode)}` : `${error.name}: ${error.message}`
    if (this.#shown.has(kind)) return
    this.#shown.add(kind)
    console.warn(explainFailure(error, base, maxDelay))
  }

  /** The server answered. */
  reset (): void {
    this.#shown.clear()
  }
}
