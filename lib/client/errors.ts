// The client's errors: CometClientError, which every error of the server or of a misuse is, and
// which of them asking again cannot cure.

/** An error answer of the server (`statusCode`, `code` and `message` are the server's), or a misuse. */
export class CometClientError extends Error {
  readonly code: string
  /** The HTTP status of the answer, for errors that come from the server. */
  readonly statusCode: number | undefined
  /** Seconds to wait before asking again, from a Retry-After header. */
  readonly retryAfter: number | undefined

  constructor (message: string, code: string, statusCode?: number, retryAfter?: number) {
    super(message)
    this.name = 'CometClientError'
    this.code = code
    this.statusCode = statusCode
    this.retryAfter = retryAfter
  }
}

export function unsubscribedError (channel: string): CometClientError {
  return new CometClientError(`fastify-comet client: unsubscribed from "${channel}" before it was ready`, 'FST_COMET_CLIENT_UNSUBSCRIBED')
}

export function closedError (): CometClientError {
  return new CometClientError('fastify-comet client: closed before the subscription was ready', 'FST_COMET_CLIENT_CLOSED')
}

/**
 * An answer that asking again will not change: a 4xx other than 408 (timeout) and 429 (too many
 * requests), such as 404 (no fastify-comet at the url) or 403 (refused by authorizeSubscribe).
 */
export function isRefusal (error: unknown): boolean {
  const statusCode = (error as CometClientError | undefined)?.statusCode
  return error instanceof CometClientError && statusCode !== undefined && statusCode >= 400 && statusCode < 500 && statusCode !== 408 && statusCode !== 429
}

/** What a subscription not yet ready rejects with when the server refuses the polls: `cause` is the server's answer. */
export function refusedError (refusal: CometClientError, explanation: string): CometClientError {
  const error = new CometClientError(explanation, 'FST_COMET_CLIENT_REFUSED', refusal.statusCode, refusal.retryAfter)
  error.cause = refusal
  return error
}
