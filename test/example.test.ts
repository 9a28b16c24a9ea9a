// The example server as `npm start` runs it: a real process, on a free port, stopped by a signal.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { outsideTap, poll } from './helpers.js'

const repoRoot = fileURLToPath(new URL('..', import.meta.url))

t.test('the example server publishes from server code, reports stats, and closes on SIGTERM', async t => {
  // As `npm start` runs it, outside tap's hooks.
  const server = spawn(...outsideTap(process.execPath, ['--import=tsx', 'example/server.ts']), {
    cwd: repoRoot,
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'inherit']
  })
  t.teardown(() => { server.kill('SIGKILL') })

  // Fastify's logger prints one JSON line per event; the listening one names the address.
  let output = ''
  const origin = await new Promise<string>((resolve, reject) => {
    server.stdout.setEncoding('utf8')
    server.stdout.on('data', (chunk: string) => {
      output += chunk
      const address = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(output)?.[1]
      if (address !== undefined) resolve(address)
    })
    server.once('exit', code => reject(new Error(`the example exited with ${String(code)} before listening:\n${output}`)))
  })

  async function pendingPolls (): Promise<number> {
    for (let i = 0; i < 200; i++) {
      const { pending } = await (await fetch(`${origin}/stats`)).json() as { pending: number }
      if (pending > 0) return pending
    }
    return 0
  }

  const waiting = poll(origin, { clock: '0' })
  t.equal(await pendingPolls(), 1, 'GET /stats shows the waiting poll')

  const tick = await (await fetch(`${origin}/tick`, { method: 'POST' })).json() as { id: string }
  const { body } = await waiting
  t.equal(body.k?.clock, tick.id, 'POST /tick published on the clock channel')
  t.match(body.m?.clock?.[0]?.data, { time: String })

  const closing = poll(origin, body.p)
  t.equal(await pendingPolls(), 1)
  server.kill('SIGTERM')
  t.equal((await closing).body.s, 0, 'the waiting poll is answered on close')
  const [code] = await once(server, 'exit')
  t.equal(code, 0)
})
