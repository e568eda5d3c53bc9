-- Store a message in a queue's stream (creating the stream and its group if needed), then
-- hold MAX_QUEUE_MESSAGES: it bounds what is stored and not delivered yet (the entries after
-- the group's last-delivered id), as in embedded mode; delivered, unacknowledged entries
-- (the group's pending list) are never trimmed away. Past the bound the oldest undelivered
-- go, at most ARGV[4] per call (a bound lowered on restart is reached over a few publishes).
-- KEYS[1] queue:{name} (stream)  KEYS[2] :counts
-- ARGV[1] max stored  ARGV[2] payload  ARGV[3] group  ARGV[4] most entries dropped per call
-- Returns {dropped, created 1/0}.
local created = 0
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('XGROUP', 'CREATE', KEYS[1], ARGV[3], '0', 'MKSTREAM')
  created = 1
end
redis.call('XADD', KEYS[1], '*', 'm', ARGV[2])
local pending = tonumber(redis.call('XPENDING', KEYS[1], ARGV[3])[1])
local excess = math.min(redis.call('XLEN', KEYS[1]) - pending - tonumber(ARGV[1]), tonumber(ARGV[4]))
local dropped = 0
if excess > 0 then
  local last = '0-0'
  for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
    local name, lastId
    for i = 1, #group, 2 do
      if group[i] == 'name' then name = group[i + 1] elseif group[i] == 'last-delivered-id' then lastId = group[i + 1] end
    end
    if name == ARGV[3] then last = lastId end
  end
  for _, entry in ipairs(redis.call('XRANGE', KEYS[1], '(' .. last, '+', 'COUNT', excess)) do
    dropped = dropped + redis.call('XDEL', KEYS[1], entry[1])
  end
end
if dropped > 0 then redis.call('HINCRBY', KEYS[2], 'dropped', dropped) end
return {dropped, created}
