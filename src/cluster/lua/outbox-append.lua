-- Append session events to an instance's outbox stream, keeping its open-session index.
-- KEYS[1] backend:{instanceId}:events (stream, field 'e': the event JSON)
-- KEYS[2] backend:{instanceId}:open (hash sessionId -> open-info fragment, what an instance-lost DISCONNECT needs)
-- ARGV[1] the stream's bound (oldest trimmed past it)
-- ARGV[2..] per event, four values: its type ('' when sessions are not tracked), its
--   sessionId, its JSON, and the open-info fragment (CONNECT only, '' otherwise)
-- Returns {trimmed, length}: events trimmed by the bound, and the stream's length after.
local max = tonumber(ARGV[1])
for i = 2, #ARGV, 4 do
  redis.call('XADD', KEYS[1], '*', 'e', ARGV[i + 2])
  if ARGV[i] == 'CONNECT' then redis.call('HSET', KEYS[2], ARGV[i + 1], ARGV[i + 3])
  elseif ARGV[i] == 'DISCONNECT' then redis.call('HDEL', KEYS[2], ARGV[i + 1]) end
end
local trimmed = 0
if redis.call('XLEN', KEYS[1]) > max then trimmed = redis.call('XTRIM', KEYS[1], 'MAXLEN', max) end
return { trimmed, redis.call('XLEN', KEYS[1]) }
