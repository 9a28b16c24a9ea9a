-- Presence on one channel, atomically, so that however many processes run it at once each member
-- joins once and leaves once: adds or extends this process's members, removes the members whose
-- time is up, and with ARGV[8] 'snapshot' also lists them.
-- KEYS[1..3] the meta, stream and shard channel of <channel>@presence (as publish.lua's), KEYS[4]
-- a sorted set of members by expiry time, KEYS[5] one by join time, KEYS[6] a hash of their info,
-- all in the slot of <channel>@presence. ARGV[4] historySize, ARGV[5] the largest JSON sent inside
-- a notification, ARGV[6] '1' for join and leave events, ARGV[7] the grace period in milliseconds,
-- ARGV[9] the most members listed, then from ARGV[10] triples: id, info as JSON, milliseconds
-- from now that the member stays at least.
-- Returns { count, cursor or '', id, since, info, id, since, info, ... } for a snapshot, else {}.
local events = ARGV[6] == '1'
local now = now_ms()
local epoch, top
if events then epoch, top = current_epoch() end
local published = false

-- As publish.lua does, within this script.
local function publish_event (json)
  top = redis.call('HINCRBY', KEYS[1], 't', 1)
  redis.call('XADD', KEYS[2], 'MAXLEN', '=', ARGV[4], top .. '-0', 't', now, 'd', json)
  local data = ''
  if string.len(json) <= tonumber(ARGV[5]) then data = json end
  redis.call('SPUBLISH', KEYS[3], epoch .. '.' .. (top - 1) .. ' ' .. epoch .. '.' .. top .. ' ' .. data)
  published = true
end

-- The entries first: a member held by the caller stays, even when its refresh comes late.
for i = 10, #ARGV, 3 do
  local id = ARGV[i]
  local expires = now + tonumber(ARGV[i + 2])
  local current = redis.call('ZSCORE', KEYS[4], id)
  if not current then
    redis.call('ZADD', KEYS[4], expires, id)
    redis.call('ZADD', KEYS[5], now, id)
    redis.call('HSET', KEYS[6], id, ARGV[i + 1])
    if events then publish_event('{"type":"join","id":' .. cjson.encode(id) .. ',"info":' .. ARGV[i + 1] .. ',"since":' .. now .. '}') end
  elseif tonumber(current) < expires then
    -- Never shorter: another process may hold the same member longer.
    redis.call('ZADD', KEYS[4], expires, id)
  end
end

for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now)) do
  redis.call('ZREM', KEYS[4], id)
  redis.call('ZREM', KEYS[5], id)
  redis.call('HDEL', KEYS[6], id)
  if events then publish_event('{"type":"leave","id":' .. cjson.encode(id) .. '}') end
end

if published then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end

-- The members' keys outlive the last member's expiry by a grace period, for a process to purge
-- it and tell its leave; then they expire, with nobody left to tell.
local last = redis.call('ZRANGE', KEYS[4], -1, -1, 'WITHSCORES')
if last[2] == nil then
  redis.call('DEL', KEYS[4], KEYS[5], KEYS[6])
else
  local ttl = tonumber(last[2]) - now + tonumber(ARGV[7])
  redis.call('PEXPIRE', KEYS[4], ttl)
  redis.call('PEXPIRE', KEYS[5], ttl)
  redis.call('PEXPIRE', KEYS[6], ttl)
end

if ARGV[8] ~= 'snapshot' then return {} end
local cursor = ''
if events then cursor = epoch .. '.' .. top end
local reply = { redis.call('ZCARD', KEYS[4]), cursor }
local listed = redis.call('ZRANGE', KEYS[5], 0, tonumber(ARGV[9]) - 1, 'WITHSCORES')
for i = 1, #listed, 2 do
  reply[#reply + 1] = listed[i]
  reply[#reply + 1] = tonumber(listed[i + 1])
  reply[#reply + 1] = redis.call('HGET', KEYS[6], listed[i])
end
return reply
