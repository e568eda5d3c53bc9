-- A single Redis: the whole registration of a session in one script, the policy decided on
-- the user's sorted set, holders on dead instances dropped and told, and the registering
-- instance's generation checked first (a fenced generation writes nothing).
-- KEYS[1] user:{userId} (zset: sessionId scored by connectedAt)   KEYS[2] session:{sessionId} (hash)
-- KEYS[3] sessions:all   KEYS[4] instance:{me}:sessions   KEYS[5] instance:{me}:users
-- KEYS[6] instance:{me} (liveness: must hold ARGV[8] unless ARGV[8] is empty: a registry used without membership)
-- ARGV[1] sessionId  ARGV[2] connectedAt  ARGV[3] max sessions per user (-1: no limit)
-- ARGV[4] 'reject' | 'replace'  ARGV[5] session TTL (s)  ARGV[6] session key prefix ('…session:{')
-- ARGV[7] instance key prefix ('…instance:{')  ARGV[8] the writer's generation
-- ARGV[9] ERROR text for a holder dropped as dead  ARGV[10] ERROR text for a replaced holder
-- ARGV[11] inbox TTL (s)  ARGV[12] '1' to drop holders on dead instances, '0' not to (just after
-- Redis came back, when the others have not refreshed their liveness keys yet)
-- ARGV[13..] the session hash's field/value pairs
-- Returns {1, evicted...} bound; {0, holders...} refused (reject); {2} refused because this
-- session is older than the holders (replace: a re-registration that lost); {-1} fenced.
-- Every holder removed here is told through its instance's inbox (a list of JSON commands).
if ARGV[8] ~= '' and redis.call('GET', KEYS[6]) ~= ARGV[8] then return {-1} end
local id, score, max, mode = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local function tell(holder, instance, code, text)
  local inbox = ARGV[7] .. instance .. '}:inbox'
  redis.call('RPUSH', inbox, cjson.encode({type = 'kick', sessionId = holder, code = code, message = text}))
  redis.call('EXPIRE', inbox, ARGV[11])
end
if max >= 0 and ARGV[12] == '1' then
  for _, holder in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    local instance = redis.call('HGET', ARGV[6] .. holder .. '}', 'instanceId')
    if not instance or redis.call('EXISTS', ARGV[7] .. instance .. '}') == 0 then
      redis.call('ZREM', KEYS[1], holder)
      if instance then tell(holder, instance, 'UNAVAILABLE', ARGV[9]) end
    end
  end
end
redis.call('ZREM', KEYS[1], id)
local count = redis.call('ZCARD', KEYS[1])
local reply = {1}
if max >= 0 and count >= max then
  if mode == 'reject' then
    local holders = redis.call('ZRANGE', KEYS[1], 0, -1)
    table.insert(holders, 1, 0)
    return holders
  end
  local evictCount = count + 1 - max
  -- The oldest go; this session is among them when fewer than evictCount holders are older.
  if redis.call('ZCOUNT', KEYS[1], '-inf', '(' .. ARGV[2]) < evictCount then return {2} end
  local evicted = redis.call('ZRANGE', KEYS[1], 0, evictCount - 1)
  for _, old in ipairs(evicted) do
    redis.call('ZREM', KEYS[1], old)
    local instance = redis.call('HGET', ARGV[6] .. old .. '}', 'instanceId')
    if instance then tell(old, instance, 'SESSION_REPLACED', ARGV[10]) end
    reply[#reply + 1] = old
  end
end
local fields = {}
for i = 13, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[2], unpack(fields))
redis.call('EXPIRE', KEYS[2], ARGV[5])
redis.call('ZADD', KEYS[1], score, id)
redis.call('SADD', KEYS[3], id)
if redis.call('SADD', KEYS[4], id) == 1 then
  redis.call('HINCRBY', KEYS[5], redis.call('HGET', KEYS[2], 'userId'), 1)
end
return reply
