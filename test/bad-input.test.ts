import Fastify, { type FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import comet from '../plugin.js'
import { eventually, poll, serve, subscribeQuery, within } from './helpers.js'

interface FastifyError {
  statusCode: number
  code: string
  error: string
  message: string
}

async function appWithHistory (t: Test): Promise<FastifyInstance> {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(comet, { tries: 1, sleep: 0.02, maxChannels: 3, maxPayload: 100 })
  await app.comet.publish('room', 'kept')
  return app
}

// Each bad request gets a 4xx in Fastify's JSON error format, and leaves what was published alone.
const badSubscribes: Array<[string, string, number, string]> = [
  ['no channel at all', '', 400, 'FST_COMET_NO_CHANNEL'],
  ['an unrelated query only', '_=1700000000', 400, 'FST_COMET_NO_CHANNEL'],
  ['a channel name with a space', 'subscribed[a%20b]=0', 400, 'FST_COMET_INVALID_CHANNEL'],
  ['a channel name with a slash', 'subscribed[a/b]=0', 400, 'FST_COMET_INVALID_CHANNEL'],
  ['an empty channel name', 'subscribed[]=0', 400, 'FST_COMET_INVALID_CHANNEL'],
  ['a channel name of 129 characters', `subscribed[${'x'.repeat(129)}]=0`, 400, 'FST_COMET_INVALID_CHANNEL'],
  ['a cursor with characters outside the URL-safe set', 'subscribed[room]=%24%7B%7D', 400, 'FST_COMET_INVALID_CURSOR'],
  ['a cursor of 65 characters', `subscribed[room]=${'a'.repeat(65)}`, 400, 'FST_COMET_INVALID_CURSOR'],
  ['a cursor this kind of server never gives', 'subscribed[room]=not-a-cursor', 400, 'FST_COMET_INVALID_CURSOR'],
  ['the same channel twice', 'subscribed[room]=0&subscribed[room]=all', 400, 'FST_COMET_DUPLICATE_CHANNEL'],
  ['the same channel three times, one cursor bad', 'subscribed[room]=0&subscribed[room]=%24&subscribed[room]=all', 400, 'FST_COMET_DUPLICATE_CHANNEL'],
  ['more channels than maxChannels', subscribeQuery({ a: '0', b: '0', c: '0', d: '0' }), 400, 'FST_COMET_TOO_MANY_CHANNELS'],
  ['subscribed as a plain value', 'subscribed=room', 400, 'FST_ERR_VALIDATION'],
  ['wait other than 0 or 1', 'subscribed[room]=0&wait=no', 400, 'FST_ERR_VALIDATION']
]

for (const [what, query, statusCode, code] of badSubscribes) {
  t.test(`a subscribe with ${what} gets ${statusCode} ${code}`, async t => {
    const app = await appWithHistory(t)
    const response = await app.inject(`/comet/subscribe?${query}`)
    t.equal(response.statusCode, statusCode)
    t.equal(response.headers['cache-control'], 'no-store')
    const error = response.json<FastifyError>()
    t.match(error, { statusCode, code, error: 'Bad Request', message: String })
    if (code.startsWith('FST_COMET')) t.match(error.message, /^fastify-comet: /)
    t.equal(app.comet.stats().pending, 0)
    const held = await app.inject('/comet/subscribe?subscribed[room]=all')
    t.same(held.json().m.room.map((e: { data: unknown }) => e.data), ['kept'], 'what was published is intact')
  })
}

t.test('error messages say what is wrong and how to fix it', async t => {
  const app = await appWithHistory(t)
  t.match((await app.inject('/comet/subscribe?subscribed[a%20b]=0')).json(), {
    message: 'fastify-comet: invalid channel name "a b"; a channel name has 1 to 128 characters from A-Z a-z 0-9 _ - . : @'
  })
  t.match((await app.inject('/comet/subscribe?subscribed[room]=nope')).json(), {
    message: /invalid cursor for channel "room"; send "0" \(or nothing\) to start from now, "all" for everything held/
  })
  t.match((await app.inject(`/comet/subscribe?${subscribeQuery({ a: '', b: '', c: '', d: '' })}`)).json(), {
    message: /names 4 channels, more than maxChannels \(3\)/
  })
  // Regression: this said "querystring/subscribed[a] must be string".
  t.match((await app.inject('/comet/subscribe?subscribed[a]=1&subscribed[a]=2')).json(), {
    message: 'fastify-comet: a subscribe names channel "a" more than once; send each channel once, as subscribed[<channel>]=<cursor> with the cursor of its last answer'
  })
  // Regression: this said "invalid channel name in the publish URL".
  t.match((await app.inject({ method: 'POST', url: '/comet/publish' })).json(), {
    message: 'fastify-comet: a publish names no channel; put it in the path, POST /comet/publish/<channel>, or in the query string, POST /comet/publish?channel=<channel>'
  })
})

t.test('a channel named twice in the nested form (a query-string parser such as qs) gets 400 FST_COMET_DUPLICATE_CHANNEL', async t => {
  const app = Fastify({ routerOptions: { querystringParser: () => ({ subscribed: { room: ['0', 'all'] } }) } })
  t.teardown(() => app.close())
  await app.register(comet)
  const response = await app.inject('/comet/subscribe?subscribed[room]=0&subscribed[room]=all')
  t.match([response.statusCode, response.json()], [400, { code: 'FST_COMET_DUPLICATE_CHANNEL', message: /channel "room" more than once/ }])
})

t.test('the publish error names the prefix where the channel goes', async t => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(comet, { prefix: '/live' })
  t.match((await app.inject({ method: 'POST', url: '/live/publish' })).json(), { code: 'FST_COMET_NO_PUBLISH_CHANNEL', message: /POST \/live\/publish\/<channel>, or in the query string, POST \/live\/publish\?channel=<channel>/ })
})

const badPublishes: Array<[string, { url: string, headers?: Record<string, string>, payload?: string | Buffer }, number, string]> = [
  ['a channel name with a space', { url: '/comet/publish/a%20b' }, 400, 'FST_COMET_INVALID_CHANNEL'],
  ['a channel name with an encoded slash', { url: '/comet/publish/a%2Fb' }, 400, 'FST_COMET_INVALID_CHANNEL'],
  ['an empty channel name', { url: '/comet/publish/' }, 400, 'FST_COMET_NO_PUBLISH_CHANNEL'],
  ['a channel name of 129 characters', { url: `/comet/publish/${'x'.repeat(129)}` }, 400, 'FST_COMET_INVALID_CHANNEL'],
  ['no channel in the query form', { url: '/comet/publish' }, 400, 'FST_COMET_NO_PUBLISH_CHANNEL'],
  ['an empty channel in the query form', { url: '/comet/publish?channel=' }, 400, 'FST_COMET_NO_PUBLISH_CHANNEL'],
  ['a bad channel in the query form', { url: '/comet/publish?channel=a%20b' }, 400, 'FST_COMET_INVALID_CHANNEL'],
  ['a body over maxPayload', { url: '/comet/publish/room', headers: { 'content-type': 'application/json' }, payload: JSON.stringify('x'.repeat(200)) }, 413, 'FST_ERR_CTP_BODY_TOO_LARGE'],
  ['text that is over maxPayload once it is JSON', { url: '/comet/publish/room', headers: { 'content-type': 'text/plain' }, payload: '"'.repeat(60) }, 413, 'FST_COMET_PAYLOAD_TOO_LARGE'],
  ['an unsupported content type', { url: '/comet/publish/room', headers: { 'content-type': 'application/xml' }, payload: '<a/>' }, 415, 'FST_ERR_CTP_INVALID_MEDIA_TYPE'],
  ['a form body', { url: '/comet/publish/room', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: 'a=1' }, 415, 'FST_ERR_CTP_INVALID_MEDIA_TYPE'],
  ['malformed JSON', { url: '/comet/publish/room', headers: { 'content-type': 'application/json' }, payload: '{"a":' }, 400, 'FST_ERR_CTP_INVALID_JSON_BODY'],
  ['a JSON content type and no body', { url: '/comet/publish/room', headers: { 'content-type': 'application/json' } }, 400, 'FST_ERR_CTP_EMPTY_JSON_BODY'],
  // Regression: these were stored with U+FFFD in place of the bytes sent.
  ['text declared latin1', { url: '/comet/publish/room', headers: { 'content-type': 'text/plain; charset=latin1' }, payload: Buffer.from([0x68, 0xe9]) }, 415, 'FST_COMET_UNSUPPORTED_CHARSET'],
  ['text that is not UTF-8', { url: '/comet/publish/room', headers: { 'content-type': 'text/plain' }, payload: Buffer.from([0x68, 0xe9]) }, 400, 'FST_COMET_INVALID_UTF8'],
  ['JSON that is not UTF-8', { url: '/comet/publish/room', headers: { 'content-type': 'application/json' }, payload: Buffer.from([0x22, 0x68, 0xe9, 0x22]) }, 400, 'FST_COMET_INVALID_UTF8'],
  ['JSON declared UTF-16', { url: '/comet/publish/room', headers: { 'content-type': 'application/json; charset="UTF-16"' }, payload: '"h"' }, 415, 'FST_COMET_UNSUPPORTED_CHARSET'],
  ['JSON with a __proto__ key', { url: '/comet/publish/room', headers: { 'content-type': 'application/json' }, payload: '{"__proto__":{"x":1}}' }, 400, 'FST_ERR_CTP_INVALID_JSON_BODY']
]

for (const [what, request, statusCode, code] of badPublishes) {
  t.test(`a publish with ${what} gets ${statusCode} ${code}`, async t => {
    const app = await appWithHistory(t)
    const response = await app.inject({ method: 'POST', ...request })
    t.equal(response.statusCode, statusCode)
    t.match(response.json<FastifyError>(), { statusCode, code, error: String, message: String })
    t.equal(app.comet.stats().published, 1, 'nothing was published')
    const held = await app.inject('/comet/subscribe?subscribed[room]=all')
    t.same(held.json().m.room.map((e: { data: unknown }) => e.data), ['kept'], 'what was published is intact')
  })
}

t.test('a UTF-8 body is published exactly as sent, whichever way its charset is spelled', async t => {
  const app = await appWithHistory(t)
  const bodies: Array<[string, string | Buffer, unknown]> = [
    ['text/plain; charset=UTF-8', Buffer.from('hé 😀', 'utf8'), 'hé 😀'],
    ['text/plain;charset=utf8', Buffer.from('\ufeffbom kept', 'utf8'), '\ufeffbom kept'],
    ['application/json; charset="utf-8"', Buffer.from('{"t":"é"}', 'utf8'), { t: 'é' }],
    ['application/json', '"\\ud800"', '\ud800']
  ]
  for (const [contentType, payload] of bodies) {
    const response = await app.inject({ method: 'POST', url: '/comet/publish/room', headers: { 'content-type': contentType }, payload })
    t.equal(response.statusCode, 200, contentType)
  }
  const held = await app.inject('/comet/subscribe?subscribed[room]=all')
  t.same(held.json().m.room.map((e: { data: unknown }) => e.data), ['kept', ...bodies.map(b => b[2])])
})

t.test('publish from server code rejects what it cannot send, with a coded error', async t => {
  const app = await appWithHistory(t)
  const circular: Record<string, unknown> = {}
  circular.self = circular
  await t.rejects(app.comet.publish('a b', 1), { code: 'FST_COMET_INVALID_CHANNEL', statusCode: 400, message: /invalid channel name "a b"/ })
  await t.rejects(app.comet.publish(42 as unknown as string, 1), { code: 'FST_COMET_INVALID_CHANNEL', message: /invalid channel name 42/ })
  await t.rejects(app.comet.publish(undefined as unknown as string, 1), { code: 'FST_COMET_INVALID_CHANNEL', message: /invalid channel name undefined/ })
  await t.rejects(app.comet.publish('room', 10n), { code: 'FST_COMET_INVALID_DATA', message: /BigInt/ })
  await t.rejects(app.comet.publish('room', circular), { code: 'FST_COMET_INVALID_DATA', message: /circular/ })
  await t.rejects(app.comet.publish('room', () => 1), { code: 'FST_COMET_INVALID_DATA', message: /a function is not JSON/ })
  await t.rejects(app.comet.publish('room', 'x'.repeat(99)), { code: 'FST_COMET_PAYLOAD_TOO_LARGE', statusCode: 413, message: /101 bytes as JSON, more than maxPayload \(100\)/ })
  await t.rejects(app.comet.publish('room', 'é'.repeat(50)), { code: 'FST_COMET_PAYLOAD_TOO_LARGE' }, 'maxPayload counts bytes, not characters')
  t.match(await app.comet.publish('room'), { id: String }, 'no data is a null notification')
  const held = await app.inject('/comet/subscribe?subscribed[room]=all')
  t.same(held.json().m.room.map((e: { data: unknown }) => e.data), ['kept', null])
})

t.test('past maxPending a subscribe gets 503 with Retry-After, and the polls already waiting are untouched', async t => {
  const { app, origin } = await serve(t, { maxPending: 2, sleep: 1.5, tries: 20 })
  const waiting = [poll(origin, { a: '0' }), poll(origin, { b: '0' })]
  await eventually(() => app.comet.stats().pending === 2)

  const refused = await poll(origin, { c: '0' })
  t.equal(refused.status, 503)
  t.equal(refused.headers.get('retry-after'), '2', 'sleep rounded up')
  t.match(refused.body, { statusCode: 503, code: 'FST_COMET_TOO_MANY_PENDING', error: 'Service Unavailable' })
  t.equal(app.comet.stats().pending, 2)
  t.equal(app.comet.stats().channels, 2, 'the refused poll left no channel behind')

  // A poll with something to deliver is answered at once, so the limit does not apply to it.
  await app.comet.publish('c', 'ready')
  const answered = await poll(origin, { c: 'all' })
  t.equal(answered.status, 200)

  await app.comet.publish('a', 'x')
  await app.comet.publish('b', 'y')
  // Far below the 30 s timeout, at which the events would come too, read again.
  t.same((await within(Promise.all(waiting), 3000, 'the waiting polls')).map(r => r.body.s), [1, 1])
})
