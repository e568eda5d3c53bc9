-- A Redis Cluster: the policy decision alone, on the user's slot (the other writes are in
-- other slots; redis-registry.ts orders them). Holders known to be dead are passed in.
-- KEYS[1] user:{userId} (zset)
-- ARGV[1] sessionId  ARGV[2] connectedAt  ARGV[3] max per user (-1: none)  ARGV[4] 'reject' | 'replace'
-- ARGV[5..] ids of holders whose instance is dead
-- Returns {1, evicted...} bound; {0, holders...} refused; {2} older than the holders (replace: lost).
for i = 5, #ARGV do redis.call('ZREM', KEYS[1], ARGV[i]) end
redis.call('ZREM', KEYS[1], ARGV[1])
local max = tonumber(ARGV[3])
local count = redis.call('ZCARD', KEYS[1])
if max < 0 or count < max then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
  return {1}
end
if ARGV[4] == 'reject' then
  local holders = redis.call('ZRANGE', KEYS[1], 0, -1)
  table.insert(holders, 1, 0)
  return holders
end
local evictCount = count + 1 - max
if redis.call('ZCOUNT', KEYS[1], '-inf', '(' .. ARGV[2]) < evictCount then return {2} end
local evicted = redis.call('ZRANGE', KEYS[1], 0, evictCount - 1)
for _, id in ipairs(evicted) do redis.call('ZREM', KEYS[1], id) end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
table.insert(evicted, 1, 1)
return evicted
