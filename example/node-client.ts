// A Node.js client of minimal-server.ts: prints each event of the channel "news" as one line of
// JSON. `node --import=tsx node-client.ts [http://localhost:3000]`; Ctrl-C stops it.
import { CometClient } from 'fastify-comet/client'

const server = process.argv[2] ?? 'http://localhost:3000'
const client = new CometClient({ url: `${server}/comet`, onError: error => console.error(`poll failed (retrying): ${error.message}`) })

const news = client.subscribe('news', data => console.log(JSON.stringify(data)))
// Settles once the server answered a first poll: from then on, no event on "news" is missed.
await news.ready
console.error(`subscribed to "news" at ${server}/comet`)

process.once('SIGINT', () => client.close())
process.once('SIGTERM', () => client.close())
