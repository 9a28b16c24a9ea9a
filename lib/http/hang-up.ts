// Forgets a poll the moment its client is gone, however the request came: alone on its connection,
// pipelined behind others, over HTTP/1.0, or as an HTTP/2 stream.
import type { Http2ServerRequest } from 'node:http2'
import type { Socket } from 'node:net'
import type { FastifyReply, FastifyRequest } from 'fastify'

/** What the route hands over: a poll it can call off, or have answered at once. Both do nothing to a poll already answered. */
export interface HeldPoll {
  cancel (): void
  answerNow (): void
}

// The newest poll of each HTTP/1 connection, kept on the socket itself: cheaper than a WeakMap
// entry and a listener closure per connection. A response queued behind another on its connection
// (pipelining) never emits 'close' when the connection closes: only the socket says so. Only the
// poll is kept, not its request or response: once answered, it holds neither, and what the socket
// keeps until the next poll is small (kept longer, a request's objects outlive the garbage
// collector's young generation, and the collector then works harder for every poll).
const kNewestPoll = Symbol('fastify-comet.newestPoll')

interface PollingSocket extends Socket {
  [kNewestPoll]?: HeldPoll
}

/**
 * Cancels `poll` as soon as its client goes away. On HTTP/1 a connection holds one waiting poll,
 * the newest: one pipelined behind another is answered at once (with nothing new), since its answer
 * could only be sent after the newer one's. So a client that pipelines polls gets them answered
 * instead of piling them up on the server, and Node.js, which stops reading a connection whose
 * answers queue up, never stops reading one that holds a waiting poll: its hang-up is seen.
 */
export function cancelOnHangUp (request: FastifyRequest, reply: FastifyReply, poll: HeldPoll): void {
  const raw = request.raw
  if (raw.httpVersionMajor === 2) {
    // A stream reset or a closed session closes the stream's response, even while it waits.
    if ((raw as unknown as Http2ServerRequest).stream.destroyed) poll.cancel()
    else reply.raw.once('close', () => poll.cancel())
    return
  }
  const socket = raw.socket as PollingSocket
  if (socket.destroyed) {
    // The client hung up before this point (say, while an authorization hook ran): its 'close' is past.
    poll.cancel()
    return
  }
  const earlier = socket[kNewestPoll]
  if (earlier === undefined) socket.on('close', cancelNewestPoll)
  else earlier.answerNow()
  socket[kNewestPoll] = poll
}

// Cancelling a poll that was answered does nothing.
function cancelNewestPoll (this: PollingSocket): void {
  (this[kNewestPoll] as HeldPoll).cancel()
}
