// The example chat on Redis (REDIS_URL), as processes: two of them share a room's messages, its
// history and its wake-ups; WORKERS=2 runs them as one node:cluster on one port, whose /metrics
// covers every worker; a Redis that goes away gets 503s with Retry-After, not hangs, and the chat
// works again once it is back; a Redis that cannot be reached at start gets one line and exit 1.
import { createServer } from 'node:net'
import parsePrometheus from 'parse-prometheus-text-format'
import { Agent, request } from 'undici'
import t from 'tap'
import { runExampleToExit, startExample } from './example-process.js'
import { poll, sleep, type PollReply } from './helpers.js'
import { startRedis } from './redis-server.js'

// Far below the 40 s a poll waits: an answer in time was pushed by a publish.
const deadline = 5000

async function post (origin: string, room: string, text: string): Promise<{ status: number, headers: Headers, body: any }> {
  const response = await fetch(`${origin}/rooms/${room}/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'Ada', text })
  })
  return { status: response.status, headers: response.headers, body: await response.json() }
}

async function stored (origin: string, room: string): Promise<unknown[]> {
  return (await (await fetch(`${origin}/rooms/${room}/messages`)).json() as { messages: unknown[] }).messages
}

/** Resolves once the server (one process of it) holds at least `count` waiting polls. */
async function pollsWaiting (origin: string, count = 1): Promise<void> {
  const giveUp = Date.now() + deadline
  for (;;) {
    const { pending } = await (await fetch(`${origin}/stats`)).json() as { pending: number }
    if (pending >= count) return
    if (Date.now() > giveUp) throw new Error(`fewer than ${count} polls waiting after ${deadline} ms`)
    await sleep(20)
  }
}

/** A promise that rejects after `ms`, to race an answer that must come in time. */
function within<T> (ms: number, what: string, answer: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms) })
  return Promise.race([answer, late]).finally(() => clearTimeout(timer))
}

/** A loopback port nothing listens on (it was free a moment ago). */
async function closedPort (): Promise<number> {
  const server = createServer()
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise(resolve => server.close(resolve))
  return port
}

/** The value of comet_events_published_total in a scrape of /metrics, on a connection of its own. */
async function publishedTotal (origin: string, metric = 'comet_events_published_total'): Promise<number> {
  const agent = new Agent()
  try {
    const response = await request(`${origin}/metrics`, { dispatcher: agent })
    const family = parsePrometheus(await response.body.text()).find(f => f.name === metric)
    const value = family?.metrics[0]?.value
    if (value === undefined) throw new Error(`no ${metric} in /metrics`)
    return Number(value)
  } finally {
    await agent.destroy()
  }
}

t.test('two processes on one Redis share a room: a post on one wakes a poll on the other, whose store and history have it', async t => {
  const redis = await startRedis(t)
  const [a, b] = await Promise.all([startExample(t, { redisUrl: redis.url }), startExample(t, { redisUrl: redis.url })])

  const waiting = poll(b.origin, { 'chat:shared': '0' })
  await pollsWaiting(b.origin)
  const first = await post(a.origin, 'shared', 'posted on A')
  t.equal(first.status, 201)
  const { body } = await within(deadline, 'the poll on B', waiting)
  t.same(body.m?.['chat:shared']?.map(event => event.data), [first.body], 'the poll waiting on B gets the message posted on A')

  const second = await post(b.origin, 'shared', 'posted on B')
  t.ok(second.body.seq > first.body.seq, 'the two processes number messages from one counter')
  t.same(await stored(b.origin, 'shared'), [first.body, second.body], 'B\'s store has both, in order')
  t.same(await stored(a.origin, 'shared'), [first.body, second.body], 'and so has A\'s: it is the same store')
  const held = await (await fetch(`${a.origin}/comet/subscribe?subscribed[chat:shared]=all&wait=0`)).json() as PollReply
  t.same(held.m?.['chat:shared']?.map(event => event.data), [first.body, second.body], 'the history on A has both')

  const ttl = await redis.admin().ttl('chat-store:room:shared')
  t.ok(ttl > 0 && ttl <= 24 * 60 * 60, 'the room expires, a day after its last message', { ttl })
})

t.test('WORKERS=2 runs the chat as two processes on one port; polls on either are woken; SIGTERM stops both with code 0', async t => {
  const redis = await startRedis(t)
  const chat = await startExample(t, { redisUrl: redis.url, workers: 2 })

  // The cursor at "now": a poll that reaches its worker after the post still gets the message.
  const now = await (await fetch(`${chat.origin}/comet/subscribe?subscribed[chat:cluster]=0&wait=0`)).json() as PollReply
  const cursor = encodeURIComponent(now.p['chat:cluster'] as string)
  // Each poll on a connection of its own: the primary hands new connections to the workers in turn.
  const agents = Array.from({ length: 4 }, () => new Agent())
  t.teardown(() => Promise.all(agents.map(agent => agent.destroy())))
  const polls = agents.map(async agent => {
    const response = await request(`${chat.origin}/comet/subscribe?subscribed[chat:cluster]=${cursor}`, { dispatcher: agent })
    return await response.body.json() as PollReply
  })
  const posted = await post(chat.origin, 'cluster', 'to every worker')
  t.equal(posted.status, 201)
  const answers = await within(deadline, 'the polls on the cluster', Promise.all(polls))
  for (const [i, answer] of answers.entries()) {
    t.same(answer.m?.['chat:cluster']?.map(event => event.data), [posted.body], `poll ${i + 1} got the message`)
  }

  t.equal(chat.output(), `Chat ready: open ${chat.origin} in two browser windows (2 processes, on Redis at ${redis.url}, Ctrl-C stops it)\n`,
    'one plain line, as a single process prints')
  t.equal(await chat.stop('SIGTERM'), 0, 'the cluster stops with code 0')
  t.equal(chat.errors(), '', 'and says nothing more')
})

t.test('WORKERS=2: /metrics reports the whole cluster, so comet_events_published_total never goes backwards between scrapes', async t => {
  const redis = await startRedis(t)
  const chat = await startExample(t, { redisUrl: redis.url, workers: 2 })
  // Each post and each scrape on a connection of its own, so that they land on either worker.
  const scraped: number[] = []
  for (let i = 0; i < 6; i++) {
    const agent = new Agent()
    const response = await request(`${chat.origin}/rooms/metrics/messages`, {
      method: 'POST',
      dispatcher: agent,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'Ada', text: `message ${i}` })
    })
    t.equal(response.statusCode, 201)
    await response.body.dump()
    await agent.destroy()
    scraped.push(await publishedTotal(chat.origin), await publishedTotal(chat.origin))
  }
  // Per worker, the scrapes would read 1, 0, 1, 1, 2, 1, …: Prometheus takes a drop for a reset.
  t.same(scraped, [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6], 'each scrape counts every post made so far, whichever worker answers')
  t.equal(await publishedTotal(chat.origin, 'comet_engine_connected'), 1, 'both workers are connected to Redis: 1, not 2')
})

t.test('on Redis, the one start line says so', async t => {
  const redis = await startRedis(t)
  const chat = await startExample(t, { redisUrl: redis.url })
  t.equal(chat.output(), `Chat ready: open ${chat.origin} in two browser windows (on Redis at ${redis.url}, Ctrl-C stops it)\n`)
})

for (const workers of [undefined, 2]) {
  t.test(`a REDIS_URL that cannot be reached${workers === undefined ? '' : ` (WORKERS=${workers})`}: one line saying so, without the password, and exit code 1`, async t => {
    const port = await closedPort()
    const { code, stdout, stderr } = await runExampleToExit(t, { redisUrl: `redis://:secret@127.0.0.1:${port}`, ...(workers === undefined ? {} : { workers }) })
    t.equal(code, 1)
    t.equal(stdout, '')
    t.equal(stderr, `Cannot reach Redis at redis://:***@127.0.0.1:${port} (REDIS_URL): connect ECONNREFUSED 127.0.0.1:${port}. ` +
      'Start Redis there, or unset REDIS_URL to run the chat in one process without it.\n')
  })
}

t.test('WORKERS without REDIS_URL is refused: each process would have a room of its own', async t => {
  // Its message ("WORKERS needs REDIS_URL: …") goes to stderr, which the test shows as it is.
  await t.rejects(startExample(t, { workers: 2 }), /the example exited with 1 before listening/)
})

t.test('Redis down: a post gets 503 with Retry-After at once; Redis back with its snapshot: the chat goes on with every message', async t => {
  const redis = await startRedis(t)
  const chat = await startExample(t, { redisUrl: redis.url })
  const before = await post(chat.origin, 'outage', 'before')
  t.equal(before.status, 201)

  // Saved, then stopped: it comes back with what it had, as a Redis with persistence does.
  await redis.admin().save()
  await redis.shutdown()
  const started = Date.now()
  const refused = await post(chat.origin, 'outage', 'while down')
  t.equal(refused.status, 503, 'refused')
  t.ok(Date.now() - started < deadline, 'at once, not after a hang')
  t.match(refused.body, { statusCode: 503, error: 'Service Unavailable' })
  t.equal(refused.headers.get('retry-after'), '1')

  await redis.start()
  // The store's connection comes back within about a second of Redis.
  let after = await post(chat.origin, 'outage', 'after')
  for (let tries = 0; after.status === 503 && tries < 50; tries++) {
    await sleep(100)
    after = await post(chat.origin, 'outage', 'after')
  }
  t.equal(after.status, 201, 'posting works again')
  t.same((await stored(chat.origin, 'outage')).map(m => (m as { text: string }).text), ['before', 'after'], 'the room has what was saved, and what came after')
})
