// The delivery guarantee as a property (test/delivery-property.ts), on one server with the
// memory engine. PROPERTY_RUNS and PROPERTY_SECONDS make a longer soak.
import fc from 'fast-check'
import t from 'tap'
import { checkWithinTime, deliveryProperty, HISTORY_SIZE, PRESENCE_OPTIONS, SLEEP, TRIES } from './delivery-property.js'
import { closeServer, serve, sleep } from './helpers.js'

t.test('a soak that reaches its time limit ends green, with the number of scenarios it ran', async t => {
  // Regression: past skipAllAfterTimeLimit fast-check skipped every run left, and failed for the skips.
  const { ran, outOfTime } = await checkWithinTime(fc.asyncProperty(fc.nat(), async () => { await sleep(20) }), { numRuns: 1000, timeLimitMs: 200 })
  t.ok(outOfTime, 'out of time')
  t.ok(ran > 0 && ran < 1000, `${ran} scenarios ran`)
})

t.test('a soak that finds a failure before its time limit fails with fast-check\'s report', async t => {
  await t.rejects(checkWithinTime(fc.asyncProperty(fc.nat(), async n => n < 5), { numRuns: 1000, timeLimitMs: 60_000 }), { message: /Property failed after \d+ tests[^]*Counterexample: \[5\]/ })
  t.same(await checkWithinTime(fc.asyncProperty(fc.nat(), async () => true), { numRuns: 20, timeLimitMs: 60_000 }), { ran: 20, outOfTime: false }, 'and one that passes in time ran every scenario')
})

deliveryProperty(t, 'one server', async (limits, presence) => {
  const { app, origin } = await serve(t, { tries: TRIES, sleep: SLEEP, historySize: HISTORY_SIZE, ...limits, ...(presence ? PRESENCE_OPTIONS : {}) })
  return { apps: [app], origins: [origin], close: () => closeServer(app) }
}, {
  numRuns: Number(process.env.PROPERTY_RUNS ?? 80),
  timeLimitMs: Number(process.env.PROPERTY_SECONDS ?? 45) * 1000
})
