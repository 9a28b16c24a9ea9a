// Faye (Bayeux) with its Node.js adapter and in-memory engine. The driver speaks Bayeux over HTTP
// POST and asks only for long-polling; publishes come from the server side, as an application
// would send them.
import { createServer } from 'node:http'
import faye from 'faye'
import { pollTimeoutSeconds, serveContender } from './common.js'

const server = createServer((_request, response) => { response.writeHead(404).end() })
const bayeux = new faye.NodeAdapter({ mount: '/faye', timeout: pollTimeoutSeconds })
bayeux.attach(server)
const client = bayeux.getClient()

await serveContender({
  server,
  publish: (channel, message) => { client.publish(`/c/${channel}`, message) }
})
