// Lets fastify.close() finish promptly whatever keep-alive connections clients hold.
import type { Server } from 'node:http'

/** How often connections that went idle after close began are closed; well under a second. */
const reapEveryMs = 50

/**
 * Closes idle keep-alive connections until the server has closed. Node.js's server.close() closes
 * the connections idle at that moment only; one whose request was still in flight (a poll answered
 * by close(), a slow route of the application) goes idle a moment later and would hold close()
 * until its keep-alive timeout.
 */
export function closeIdleConnectionsUntilClosed (server: Server): void {
  // HTTP/2 sessions are closed by Fastify itself, and a server that never listened holds none.
  if (!server.listening || typeof server.closeIdleConnections !== 'function') return
  const reaper = setInterval(() => server.closeIdleConnections(), reapEveryMs).unref()
  server.once('close', () => clearInterval(reaper))
}
