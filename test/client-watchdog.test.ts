// The poll watchdog: the server says how long it lets a poll wait (the Comet-Wait header), and a
// poll on a connection that died silently (never answered, never reset) is aborted after that plus
// the client's timeoutMargin, and made again from the same cursors: nothing lost or repeated.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import t, { type Test } from 'tap'
import { CometClient, type CometClientState } from '../lib/client/client.js'
import { eventually, poll, serve } from './helpers.js'

t.test('every subscribe answer says the server\'s wait in seconds', async t => {
  const { origin } = await serve(t, { tries: 3, sleep: 0.5 })
  const { headers } = await poll(origin, { room: '0', wait: '0' })
  t.equal(headers.get('comet-wait'), '1.5')
})

/**
 * A server whose waiting polls are never answered, as over a connection that died silently; it
 * answers `wait=0` polls at once, with `Comet-Wait: <wait>` unless `wait` is undefined.
 */
async function silentServer (t: Test, { wait, answerWaitZero = true }: { wait?: string, answerWaitZero?: boolean }): Promise<{ origin: string, requests: URL[], held: ServerResponse[] }> {
  const requests: URL[] = []
  const held: ServerResponse[] = []
  const server = createServer((request: IncomingMessage, response: ServerResponse) => {
    const url = new URL(request.url ?? '/', 'http://127.0.0.1')
    requests.push(url)
    if (url.searchParams.get('wait') === '0' && answerWaitZero) {
      const headers: Record<string, string> = { 'content-type': 'application/json' }
      if (wait !== undefined) headers['comet-wait'] = wait
      response.writeHead(200, headers).end(JSON.stringify({ s: 0, p: { room: 'cursor-1' } }))
    } else {
      held.push(response)
    }
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    server.closeAllConnections()
    server.close()
  })
  return { origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests, held }
}

function clientOf (t: Test, origin: string, timeoutMargin: number): { client: CometClient, errors: Error[], states: CometClientState[] } {
  const errors: Error[] = []
  const states: CometClientState[] = []
  const client = new CometClient({
    url: `${origin}/comet`,
    timeoutMargin,
    retry: { initialDelay: 10, maxDelay: 20 },
    onError: error => { errors.push(error) },
    onStateChange: state => { states.push(state) }
  })
  t.teardown(() => { client.close() })
  return { client, errors, states }
}

t.test('a waiting poll with no answer within the server\'s wait plus the margin is aborted and made again from the same cursor', async t => {
  const { origin, requests, held } = await silentServer(t, { wait: '0.1' })
  const { client, errors, states } = clientOf(t, origin, 300)
  const data: unknown[] = []
  await client.subscribe('room', value => { data.push(value) }).ready
  await eventually(() => errors.length >= 1)
  t.match(errors[0], { name: 'CometClientError', code: 'FST_COMET_CLIENT_TIMEOUT', message: /no answer to a poll within 400 ms/ })
  await eventually(() => held[0]?.socket?.destroyed === true)
  t.pass('the silent poll was hung up on')
  // It polls again at once (wait=0, after a failure), then waits again, always from the cursor it had.
  await eventually(() => requests.slice(2).some(url => url.searchParams.get('wait') === null))
  const asked = requests.map(url => [url.searchParams.get('subscribed[room]'), url.searchParams.get('wait')])
  t.same(asked.slice(0, 3), [['0', '0'], ['cursor-1', null], ['cursor-1', '0']])
  t.ok(asked.slice(1).every(([cursor]) => cursor === 'cursor-1'), 'from the same cursor')
  t.match(states, ['connecting', 'connected', 'reconnecting', 'connected'])
  t.same(data, [])
})

t.test('a poll answered at once (wait=0) that gets no answer is aborted after the margin', async t => {
  const { origin, requests } = await silentServer(t, { answerWaitZero: false })
  const { client, errors } = clientOf(t, origin, 50)
  client.subscribe('room', () => {})
  await eventually(() => errors.length >= 2)
  t.match(errors[0], { code: 'FST_COMET_CLIENT_TIMEOUT', message: /within 50 ms/ })
  t.ok(requests.length >= 2, 'and made again')
  t.equal(client.state, 'reconnecting')
})

t.test('a server that does not say its wait gets no watchdog on waiting polls', async t => {
  const { origin, requests } = await silentServer(t, {})
  // The margin is long enough for the first poll (wait=0) to be answered on a loaded machine, and
  // the wait twice that: a watchdog on the waiting poll would have fired by then.
  const { client, errors } = clientOf(t, origin, 300)
  await client.subscribe('room', () => {}).ready
  await eventually(() => requests.length === 2)
  await new Promise(resolve => setTimeout(resolve, 600))
  t.same(errors, [])
  t.equal(requests.length, 2, 'the waiting poll is still waiting')
})

t.test('timeoutMargin must be a number of milliseconds', async t => {
  t.throws(() => new CometClient({ url: 'http://127.0.0.1:9/comet', timeoutMargin: -1 }), { name: 'TypeError', message: /timeoutMargin must be a number of milliseconds \(got -1\)/ })
})
