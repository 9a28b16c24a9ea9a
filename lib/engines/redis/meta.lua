-- The channel's meta hash, shared by publish.lua and read.lua (prepended to each when loaded).
-- KEYS[1] the meta hash { e = epoch, t = top offset, r = Redis run_id }, KEYS[2] the stream.
-- ARGV[1] a fresh random epoch, ARGV[2] '1' to start a new epoch when Redis's run_id changed,
-- ARGV[3] historyTtl in milliseconds.

-- Returns the channel's epoch and top offset. A missing meta (never used, expired, evicted) or one
-- written by another Redis run (a restart, or a failover to a replica) starts a new epoch with an
-- empty stream: offsets are never reused under one epoch, so no cursor can silently skip events.
local function current_epoch ()
  local meta = redis.call('HMGET', KEYS[1], 'e', 't', 'r')
  local run = ''
  if ARGV[2] == '1' then
    run = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
  end
  if meta[1] and meta[3] == run then
    return meta[1], tonumber(meta[2])
  end
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'e', ARGV[1], 't', 0, 'r', run)
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return ARGV[1], 0
end

-- Redis's clock in milliseconds: only to expire events, never in a cursor.
local function now_ms ()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end
