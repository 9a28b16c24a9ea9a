// The streaming options (lib/http/stream-options.ts): each bad value throws FST_COMET_INVALID_OPTION at
// registration, and the documented range is accepted.
import t from 'tap'
import { register } from './helpers.js'

const badOptions: Array<[string, Record<string, unknown>, RegExp]> = [
  ['heartbeat of zero', { heartbeat: 0 }, /option "heartbeat" must be a positive number of seconds \(got 0\)/],
  ['heartbeat as a string', { heartbeat: '20' }, /option "heartbeat".*got "20"/],
  ['infinite streamLifetime', { streamLifetime: Infinity }, /option "streamLifetime" must be a positive number of seconds/],
  ['streamLifetime shorter than heartbeat', { heartbeat: 30, streamLifetime: 10 }, /option "streamLifetime" must be more than heartbeat \(30 s\) \(got 10\)/],
  ['maxStreams of zero', { maxStreams: 0 }, /option "maxStreams" must be a positive integer or Infinity/],
  ['maxStreams as a fraction', { maxStreams: 1.5 }, /option "maxStreams"/],
  ['maxStreamQueueBytes as a string', { maxStreamQueueBytes: '1' }, /option "maxStreamQueueBytes" must be a positive integer \(got "1"\)/],
  ['maxStreamQueueBytes of zero', { maxStreamQueueBytes: 0 }, /option "maxStreamQueueBytes"/]
]

for (const [what, options, message] of badOptions) {
  t.test(`registration throws FST_COMET_INVALID_OPTION for ${what}`, async t => {
    await t.rejects(register(options), { code: 'FST_COMET_INVALID_OPTION', message })
  })
}

t.test('the streaming options accept their documented range, and an unknown option lists them', async t => {
  await t.resolves(register({ heartbeat: 0.5, streamLifetime: 0.6, maxStreams: 1, maxStreamQueueBytes: 1 }))
  await t.resolves(register({ maxStreams: Infinity, heartbeat: undefined }))
  await t.rejects(register({ heartBeat: 1 }), { code: 'FST_COMET_UNKNOWN_OPTION', message: /heartbeat, streamLifetime, maxStreams, maxStreamQueueBytes/ })
})
