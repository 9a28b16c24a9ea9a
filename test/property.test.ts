// The delivery guarantee as a property (test/delivery-property.ts), on one server with the
// memory engine. PROPERTY_RUNS and PROPERTY_SECONDS make a longer soak.
import t from 'tap'
import { deliveryProperty, HISTORY_SIZE, PRESENCE_OPTIONS, SLEEP, TRIES } from './delivery-property.js'
import { closeServer, serve } from './helpers.js'

deliveryProperty(t, 'one server', async (batchSize, presence) => {
  const { app, origin } = await serve(t, { tries: TRIES, sleep: SLEEP, historySize: HISTORY_SIZE, batchSize, ...(presence ? PRESENCE_OPTIONS : {}) })
  return { apps: [app], origins: [origin], close: () => closeServer(app) }
}, {
  numRuns: Number(process.env.PROPERTY_RUNS ?? 80),
  timeLimitMs: Number(process.env.PROPERTY_SECONDS ?? 45) * 1000
})
