// The client's errors: CometClientError, which every error of the server or of a misuse is.

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
