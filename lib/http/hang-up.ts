// Forgets a poll the moment its client is gone, however the request came: alone on its connection,
// pipelined behind others, over HTTP/1.0, or as an HTTP/2 stream.
import type { Http2ServerRequest } from 'node:http2'
import type { Socket } from 'node:net'
import type { FastifyReply, FastifyRequest } from 'fastify'

/** What the route hands over: a poll it can call off. */
export interface Cancellable {
  cancel (): void
}

interface HeldPoll {
  readonly response: FastifyReply['raw']
  readonly poll: Cancellable
}

/**
 * The polls of each HTTP/1 connection that are not answered yet. A response queued behind another
 * on its connection (pipelining) never emits 'close' when the connection closes: only the socket
 * says so, once for all of them.
 */
const heldBySocket = new WeakMap<Socket, HeldPoll[]>()

/**
 * True when the request's HTTP/1 connection holds a poll that is not answered yet. A second poll
 * on it (pipelined) could only be answered after the first, so holding it would cost memory and
 * give the client nothing.
 */
export function connectionHoldsPoll (request: FastifyRequest): boolean {
  const raw = request.raw
  if (raw.httpVersionMajor === 2) return false
  const held = heldBySocket.get(raw.socket)
  if (held === undefined) return false
  for (const entry of held) if (!entry.response.writableEnded) return true
  // A keep-alive connection polls again once answered: its earlier polls are done with.
  held.length = 0
  return false
}

/** Cancels `poll` as soon as its client goes away. */
export function cancelOnHangUp (request: FastifyRequest, reply: FastifyReply, poll: Cancellable): void {
  const raw = request.raw
  if (raw.httpVersionMajor === 2) {
    // A stream reset or a closed session closes the stream's response, even while it waits.
    if ((raw as unknown as Http2ServerRequest).stream.destroyed) poll.cancel()
    else reply.raw.once('close', () => poll.cancel())
    return
  }
  const socket = raw.socket
  if (socket.destroyed) {
    // The client hung up before this point (say, while an authorization hook ran): its 'close' is past.
    poll.cancel()
    return
  }
  let held = heldBySocket.get(socket)
  if (held === undefined) {
    held = []
    heldBySocket.set(socket, held)
    socket.once('close', () => cancelAll(socket))
  }
  held.push({ response: reply.raw, poll })
}

function cancelAll (socket: Socket): void {
  const held = heldBySocket.get(socket) as HeldPoll[]
  heldBySocket.delete(socket)
  // Cancelling an answered poll does nothing.
  for (const { poll } of held) poll.cancel()
}
