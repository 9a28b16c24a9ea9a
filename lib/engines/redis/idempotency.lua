-- Publishes one event unless its idempotency key was used on the channel within the window, in
-- one script, so that processes racing with one key store one event. Loaded after publish.lua,
-- which runs here as the function publish_event (scripts.ts wraps it): publish.lua itself is the
-- same as for a publish without a key.
-- KEYS[#KEYS] the key's record, "<id> <SHA1 of the JSON>"; ARGV[#ARGV] the window in milliseconds.
-- Returns { id, 0 } for a new event, { id, 1 } for a replay, { id, 2 } for the key used with other data.
local record_key = KEYS[#KEYS]
local fingerprint = redis.sha1hex(ARGV[4])
local record = redis.call('GET', record_key)
if record then
  local first_id, first_fingerprint = string.match(record, '^(%S+) (%x+)$')
  if first_fingerprint == fingerprint then return { first_id, 1 } end
  return { first_id, 2 }
end
local id = publish_event()
redis.call('SET', record_key, id .. ' ' .. fingerprint, 'PX', ARGV[#ARGV])
return { id, 0 }
