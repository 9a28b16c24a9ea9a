// fastify-comet with its metrics in use, to set against fastify-comet (bench/servers/comet.ts)
// with nothing listening: the same server, plus the Prometheus helper on a registry scraped every
// second, and a subscriber on each of the plugin's diagnostics channels.
import diagnostics from 'node:diagnostics_channel'
import Fastify from 'fastify'
import { Registry } from 'prom-client'
import comet, { diagnosticsChannels } from '../../plugin.js'
import { registerCometMetrics } from '../../lib/prometheus.js'
import { pollTimeoutSeconds, serveContender } from './common.js'

const app = Fastify({ keepAliveTimeout: 600_000, requestTimeout: 0, connectionTimeout: 0 })
await app.register(comet, { tries: pollTimeoutSeconds / 2, sleep: 2 })

const registry = new Registry()
registerCometMetrics(app.comet, { registry })
// As often as a busy Prometheus would; the output is dropped.
setInterval(() => { void registry.metrics() }, 1000).unref()
// A listener as small as a tracing tool's: it counts what it is told.
let told = 0
for (const name of Object.values(diagnosticsChannels)) diagnostics.subscribe(name, () => { told++ })
process.once('exit', () => { void told })

await app.ready()
await serveContender({
  server: app.server,
  publish: (channel, message) => app.comet.publish(channel, message)
})
