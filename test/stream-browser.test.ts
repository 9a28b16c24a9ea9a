// A plain EventSource in headless Chromium, without our client: it streams a channel, and when
// the server ends the stream (its lifetime) it reconnects by itself with Last-Event-ID and misses
// nothing; then the same page through nginx with its default configuration (proxy_buffering on,
// HTTP/1.0 to the upstream), where only the stream's X-Accel-Buffering: no keeps the events from
// waiting in nginx's buffers. Skipped where Chromium is not installed, as test/browser.test.ts.
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Fastify, { type FastifyInstance } from 'fastify'
import type { Browser, Page } from 'playwright-core'
import t, { type Test } from 'tap'
import comet, { type CometOptions } from '../plugin.js'
import { deadline, launchChromium } from './chat-browser.js'
import { closeServer, eventually } from './helpers.js'
import { freePort } from './redis-server.js'

const nginxPath = '/usr/sbin/nginx'

// The page: one EventSource on the channel, every event's data and every gap kept for the test.
const page = `<!doctype html><meta charset="utf-8"><title>EventSource</title><script>
  globalThis.received = []
  globalThis.gaps = []
  globalThis.opens = 0
  const source = new EventSource('/comet/subscribe?subscribed[chat]=0')
  source.onopen = () => { globalThis.opens++ }
  source.onmessage = event => { globalThis.received.push(JSON.parse(event.data).data) }
  source.addEventListener('gap', event => { globalThis.gaps.push(JSON.parse(event.data).channels) })
</script>`

async function serveWithPage (t: Test, options: CometOptions = {}): Promise<{ app: FastifyInstance, origin: string }> {
  const app = Fastify()
  await app.register(comet, { heartbeat: 0.1, streamLifetime: 0.5, ...options })
  app.get('/', async (_request, reply) => await reply.type('text/html; charset=utf-8').send(page))
  t.teardown(() => closeServer(app))
  const origin = await app.listen({ port: 0, host: '127.0.0.1' })
  return { app, origin }
}

async function openPage (t: Test, browser: Browser, origin: string): Promise<Page> {
  const context = await browser.newContext()
  t.teardown(() => context.close())
  const tab = await context.newPage()
  await tab.goto(origin)
  await tab.waitForFunction(() => (globalThis as unknown as { opens: number }).opens > 0, undefined, { timeout: deadline })
  return tab
}

async function receivedBy (tab: Page, count: number): Promise<unknown[]> {
  await tab.waitForFunction(n => (globalThis as unknown as { received: unknown[] }).received.length >= n, count, { timeout: deadline })
  return await tab.evaluate(() => (globalThis as unknown as { received: unknown[] }).received)
}

/**
 * nginx on free loopback ports in front of `upstream`, with nothing but proxy_pass configured: on
 * the first origin with its defaults, on the second with a read timeout of one second.
 */
async function startNginx (t: Test, upstream: string): Promise<[string, string]> {
  const directory = mkdtempSync(join(tmpdir(), 'comet-nginx-'))
  const port = await freePort()
  const impatientPort = await freePort()
  writeFileSync(join(directory, 'nginx.conf'), `
    worker_processes 1;
    pid ${directory}/nginx.pid;
    error_log ${directory}/error.log;
    events { worker_connections 64; }
    http {
      access_log off;
      client_body_temp_path ${directory}/body;
      proxy_temp_path ${directory}/proxy;
      fastcgi_temp_path ${directory}/fastcgi;
      uwsgi_temp_path ${directory}/uwsgi;
      scgi_temp_path ${directory}/scgi;
      server {
        listen 127.0.0.1:${port};
        location / { proxy_pass ${upstream}; }
      }
      server {
        listen 127.0.0.1:${impatientPort};
        location / { proxy_pass ${upstream}; proxy_read_timeout 1s; }
      }
    }`)
  const nginx = spawn(nginxPath, ['-p', directory, '-c', join(directory, 'nginx.conf'), '-g', 'daemon off;'], { stdio: 'ignore' })
  t.teardown(async () => {
    if (nginx.exitCode === null) {
      nginx.kill('SIGTERM')
      await new Promise(resolve => nginx.once('exit', resolve))
    }
    rmSync(directory, { recursive: true, force: true })
  })
  const origin = `http://127.0.0.1:${port}`
  await eventually(async () => await fetch(origin).then(() => true, () => false), 5000)
  return [origin, `http://127.0.0.1:${impatientPort}`]
}

const browser = await launchChromium()
if (browser !== undefined) {
  t.test('a native EventSource streams a channel and, when the server ends the stream, resumes by itself with nothing lost or repeated', async t => {
    const { app, origin } = await serveWithPage(t)
    const tab = await openPage(t, browser, origin)
    for (const n of [1, 2, 3]) await app.comet.publish('chat', n)
    t.same(await receivedBy(tab, 3), [1, 2, 3])
    // The stream's lifetime ends it within half a second; the page reconnects after `retry`.
    await tab.waitForFunction(() => (globalThis as unknown as { opens: number }).opens > 1, undefined, { timeout: deadline })
    await eventually(() => app.comet.stats().streams.ended.lifetime > 0, deadline)
    await app.comet.publish('chat', 4)
    // Published while the page may be between two streams: Last-Event-ID brings it.
    await eventually(() => app.comet.stats().streams.ended.lifetime > 1, deadline)
    await app.comet.publish('chat', 5)
    t.same(await receivedBy(tab, 5), [1, 2, 3, 4, 5])
    t.same(await tab.evaluate(() => (globalThis as unknown as { gaps: unknown[] }).gaps), [])
  })

  t.test('through nginx with its default configuration, events arrive as they are published', { skip: existsSync(nginxPath) || process.env.COMET_NGINX_TEST === 'required' ? false : `no nginx at ${nginxPath}` }, async t => {
    const { app, origin } = await serveWithPage(t, { streamLifetime: 60 })
    const [proxied, impatient] = await startNginx(t, origin)
    const tab = await openPage(t, browser, proxied)
    await app.comet.publish('chat', 'through nginx')
    t.same(await receivedBy(tab, 1), ['through nginx'], 'not held in nginx\'s buffers')

    // Heartbeats (every 0.1 s here) keep a quiet stream open past the proxy's read timeout.
    const patient = await openPage(t, browser, impatient)
    await new Promise(resolve => setTimeout(resolve, 1500))
    await app.comet.publish('chat', 'after the read timeout')
    t.same(await receivedBy(patient, 1), ['after the read timeout'])
    t.equal(await patient.evaluate(() => (globalThis as unknown as { opens: number }).opens), 1, 'on the stream it first opened')
  })
}
