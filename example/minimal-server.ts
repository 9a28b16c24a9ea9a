// The smallest server: fastify-comet's routes under /comet, and a route of the application's own
// that publishes from server code. `node --import=tsx minimal-server.ts`, then run node-client.ts,
// or: curl -X POST localhost:3000/news -H 'content-type: application/json' -d '{"text":"hi"}'
import Fastify from 'fastify'
import comet from 'fastify-comet'

const fastify = Fastify()
// Clients subscribe at GET /comet/subscribe; only server code publishes (the HTTP route gets 403).
await fastify.register(comet, { authorizePublish: () => false })

// Where the application checks what it publishes.
fastify.post<{ Body: { text: string } }>('/news', {
  schema: { body: { type: 'object', required: ['text'], properties: { text: { type: 'string', maxLength: 200 } } } }
}, async request => fastify.comet.publish('news', { text: request.body.text }))

const address = await fastify.listen({ port: Number(process.env.PORT ?? 3000), host: process.env.HOST ?? 'localhost' })
console.log(`fastify-comet listening at ${address}/comet`)
