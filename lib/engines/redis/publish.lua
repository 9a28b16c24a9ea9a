-- Publishes one event atomically: next offset, XADD with an exact MAXLEN, expiry, notification.
-- ARGV[4] the event's JSON, ARGV[5] historySize,
-- ARGV[6] the largest JSON sent inside the notification (bigger events are read back).
local epoch, top = current_epoch()
top = redis.call('HINCRBY', KEYS[1], 't', 1)
-- Exact trimming ('='): approximate trimming would keep events past historySize, and the gap a
-- client gets would depend on Redis's internal node sizes.
redis.call('XADD', KEYS[2], 'MAXLEN', '=', ARGV[5], top .. '-0', 't', now_ms(), 'd', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
local id = epoch .. '.' .. top
local data = ''
if string.len(ARGV[4]) <= tonumber(ARGV[6]) then data = ARGV[4] end
-- "<cursor before> <cursor> <JSON or nothing>": a process whose polls wait at the cursor before
-- answers them from the notification alone.
-- The shard channel of notifications, '<prefix>{<channel>}:n' beside the meta '…:m', is not among
-- KEYS: on a Cluster, a slot being migrated answers TRYAGAIN to a script whose keys are partly
-- missing, and a channel is never a key that exists, so every publish on the slot would fail until
-- the migration ended. Same hash tag, same slot: Redis accepts it undeclared.
redis.call('SPUBLISH', string.sub(KEYS[1], 1, -2) .. 'n', epoch .. '.' .. (top - 1) .. ' ' .. id .. ' ' .. data)
return id
