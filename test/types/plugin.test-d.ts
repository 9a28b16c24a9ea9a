// Type tests, checked by `npm run typecheck` (part of `npm test`): each assertion fails to compile
// when a type drifts, and each @ts-expect-error fails when the error it expects goes away.
import Fastify, { type FastifyRequest } from 'fastify'
import comet, { errors, fastifyComet, MemoryEngine, type CometAuthorizer, type CometEngine, type CometOptions, type CometStats, type AnswerReason, type EngineHealth } from '../../plugin.js'

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false
function expectType<T extends true> (_proof?: T): void {}

const app = Fastify()
void app.register(comet, {
  prefix: '/live',
  tries: 10,
  sleep: 0.5,
  historySize: 50,
  historyTtl: Infinity,
  maxChannels: 8,
  maxPayload: 1024,
  maxPending: 10_000,
  batchSize: 20,
  authorizePublish: (request, channel) => request.headers.authorization !== undefined && channel.length > 0,
  authorizeSubscribe: async (_request, channel) => channel.startsWith('public:')
})
void app.register(fastifyComet, { engine: new MemoryEngine({ historySize: 10, historyTtl: 60, now: Date.now }) })
void app.register(comet.default)

// @ts-expect-error tries is a number
void app.register(comet, { tries: '20' })
// @ts-expect-error an authorizer answers a boolean
void app.register(comet, { authorizePublish: () => 'yes' })
// @ts-expect-error unknown options are refused
void app.register(comet, { historySzie: 10 })

expectType<Equal<ReturnType<typeof app.comet.publish>, Promise<{ id: string, replayed?: true }>>>()
expectType<Equal<ReturnType<typeof app.comet.position>, Promise<string>>>()
expectType<Equal<Awaited<ReturnType<typeof app.comet.history>>, { events: Array<{ id: string, data: unknown }>, next: string, gap: boolean }>>()
void app.comet.publish('room', { text: 'hi' }, { idempotencyKey: 'a-uuid' })
void app.comet.history('room', { after: 'cursor', limit: 10 })
// @ts-expect-error an idempotency key is a string
void app.comet.publish('room', 1, { idempotencyKey: 7 })
expectType<Equal<ReturnType<typeof app.comet.stats>, CometStats>>()
expectType<Equal<Pick<CometStats, 'channels' | 'pending' | 'published' | 'delivered' | 'hangUps' | 'gaps'>, { channels: number, pending: number, published: number, delivered: number, hangUps: number, gaps: number }>>()
expectType<Equal<CometStats['answered'], Record<AnswerReason, number>>>()
expectType<Equal<AnswerReason, 'events' | 'timeout' | 'wait0' | 'close' | 'superseded'>>()
expectType<Equal<CometStats['errors'], Record<string, number>>>()
expectType<Equal<CometStats['publishToAnswerMs']['buckets'][number], { readonly le: number, readonly count: number }>>()
expectType<Equal<CometStats['engine'], EngineHealth | undefined>>()

// Route options pass through to the plugin's routes.
void app.register(comet, { logLevel: 'info', logSerializers: { user: (user: { id: string }) => user.id }, routeConfig: { rateLimit: false }, constraints: { host: 'live.example.com' }, schemaHide: true })
// @ts-expect-error logLevel is a level name
void app.register(comet, { logLevel: 'loud' })
expectType<Equal<CometAuthorizer, (request: FastifyRequest, channel: string) => boolean | Promise<boolean>>>()
expectType<Equal<NonNullable<CometOptions['engine']>, CometEngine>>()

const engine: CometEngine = new MemoryEngine()
expectType<Equal<ReturnType<CometEngine['publish']>, Promise<string>>>()
void engine

// Coded errors are constructible and carry their code.
const forbidden = new errors.FST_COMET_FORBIDDEN('publish to', 'room')
expectType<Equal<typeof forbidden.code, string>>()
// @ts-expect-error FST_COMET_FORBIDDEN takes the action and the channel
void new errors.FST_COMET_FORBIDDEN('room')
