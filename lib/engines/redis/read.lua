-- Reads a channel's held events after a position. ARGV[4] 'now', 'oldest', or the epoch of a
-- cursor; ARGV[5] the cursor's offset; ARGV[6] the most events to return.
-- Returns { epoch, top, gap (0 or 1), offset, JSON, offset, JSON, ... }.
local epoch, top = current_epoch()
-- A read keeps the meta alive: a client polling a quiet channel keeps a valid cursor, as long as
-- it comes back within historyTtl.
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if ARGV[4] == 'now' then
  return { epoch, top, 0 }
end

-- Events older than historyTtl are dropped from the head of the stream.
local oldest_kept = now_ms() - tonumber(ARGV[3])
while true do
  local head = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)[1]
  if head == nil or tonumber(head[2][2]) >= oldest_kept then break end
  redis.call('XDEL', KEYS[2], head[1])
end

local after = 0
local gap = 0
if ARGV[4] ~= 'oldest' then
  after = tonumber(ARGV[5])
  if ARGV[4] ~= epoch or after > top then
    -- A cursor of another epoch, or from beyond the top (Redis lost data since): what it missed is
    -- unknown, so everything held is returned with a gap.
    after = 0
    gap = 1
  elseif after < top then
    local head = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)[1]
    local first_held = top + 1
    if head ~= nil then first_held = tonumber(string.match(head[1], '^%d+')) end
    if first_held > after + 1 then gap = 1 end
  end
end

local reply = { epoch, top, gap }
for _, entry in ipairs(redis.call('XRANGE', KEYS[2], '(' .. after .. '-0', '+', 'COUNT', ARGV[6])) do
  reply[#reply + 1] = tonumber(string.match(entry[1], '^%d+'))
  reply[#reply + 1] = entry[2][4]
end
return reply
