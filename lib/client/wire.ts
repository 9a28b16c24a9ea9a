// The subscribe protocol as the client speaks it: the URL of a poll, and reading its answer (a poll
// reply, or the server's error in Fastify's format).
import type { PollReply } from '../protocol/wire-format.js'
import { CometClientError } from './errors.js'

export type { PollReply, WireEvent } from '../protocol/wire-format.js'

/** A subscribe for `channels`, each from its cursor; one that does not `wait` is answered at once. */
export function subscribeUrl (base: URL, channels: ReadonlyArray<{ name: string, cursor: string }>, wait: boolean): URL {
  const query = channels.map(({ name, cursor }) => `${encodeURIComponent(`subscribed[${name}]`)}=${encodeURIComponent(cursor)}`)
  if (!wait) query.push('wait=0')
  return new URL(`subscribe?${query.join('&')}`, base)
}

/** The poll reply a subscribe was answered with; rejects with the server's error for any other answer. */
export async function pollReplyOf (response: Response): Promise<PollReply> {
  if (!response.ok) throw await errorOf(response)
  return asPollReply(await response.json())
}

/** Milliseconds the server lets a poll wait, from its Comet-Wait header (in seconds). */
export function serverWaitOf (response: Response): number | undefined {
  const serverWait = Number.parseFloat(response.headers.get('comet-wait') ?? '')
  return serverWait >= 0 ? serverWait * 1000 : undefined
}

export async function errorOf (response: Response): Promise<CometClientError> {
  const retryAfter = Number.parseInt(response.headers.get('retry-after') ?? '', 10)
  const text = await response.text().catch(() => '')
  let body: { code?: unknown, message?: unknown } = {}
  try {
    body = JSON.parse(text) as typeof body
  } catch {}
  const message = typeof body.message === 'string' ? body.message : `HTTP ${response.status} ${text.slice(0, 200)}`.trim()
  const code = typeof body.code === 'string' ? body.code : `HTTP_${response.status}`
  return new CometClientError(message, code, response.status, Number.isNaN(retryAfter) ? undefined : retryAfter)
}

function asPollReply (body: unknown): PollReply {
  const reply = body as Partial<PollReply> | null
  if (typeof reply?.p !== 'object' || reply.p === null || (reply.s !== 0 && reply.s !== 1)) {
    throw new CometClientError('fastify-comet client: the answer is not a poll reply; is url the plugin\'s prefix?', 'FST_COMET_CLIENT_BAD_REPLY')
  }
  return reply as PollReply
}
