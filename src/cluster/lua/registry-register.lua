-- A single Redis: the whole registration of a session in one script, the policy decided on
-- the user's sorted set (include/registry-policy.lua), and the registering instance's generation
-- checked first (a fenced generation writes nothing).
-- KEYS[1] user:{userId} (zset: sessionId scored by connectedAt)   KEYS[2] session:{sessionId} (hash)
-- KEYS[3] sessions:all   KEYS[4] instance:{me}:sessions   KEYS[5] instance:{me}:users
-- KEYS[6] instance:{me} (liveness: must hold ARGV[8] unless ARGV[8] is empty: a registry used without membership)
-- ARGV[1] sessionId  ARGV[2] connectedAt  ARGV[3] max sessions per user (-1: no limit)
-- ARGV[4] 'reject' | 'replace'  ARGV[5] session TTL (s)  ARGV[6] session key prefix ('…session:{')
-- ARGV[7] instance key prefix ('…instance:{')  ARGV[8] the writer's generation
-- ARGV[9] the kick command (JSON, control.ts) for a dropped dead holder, up to its session id
-- ARGV[10] the same for a replaced holder  ARGV[11] inbox TTL (s)
-- ARGV[12] n: how many dead holders follow (judged by the caller)  ARGV[13..12+n] their ids;
--   n = -1: none follow, the script judges them itself (a holder whose record is gone, or whose
--   instance, not the writer's KEYS[6], has no liveness key), as dead-holders.ts does: one round
--   trip per CONNECT instead of two
-- ARGV[13+n..] the session hash's field/value pairs
-- Returns {1, evicted...} bound; {0, holders...} refused (reject); {2} refused because this
-- session is older than the holders (replace: a re-registration that lost); {-1} fenced.
-- Every holder removed here is told through its instance's inbox (a list of JSON commands).
--!include registry-policy
if ARGV[8] ~= '' and redis.call('GET', KEYS[6]) ~= ARGV[8] then return {-1} end
local function tell(holder, commandPrefix)
  local instance = redis.call('HGET', ARGV[6] .. holder .. '}', 'instanceId')
  if not instance then return end
  local inbox = ARGV[7] .. instance .. '}:inbox'
  redis.call('RPUSH', inbox, commandPrefix .. cjson.encode(holder) .. '}')
  redis.call('EXPIRE', inbox, ARGV[11])
end
local deadCount = tonumber(ARGV[12])
local dead = {}
if deadCount < 0 then
  deadCount = 0
  for _, holder in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    local instance = redis.call('HGET', ARGV[6] .. holder .. '}', 'instanceId')
    if not instance then
      dead[#dead + 1] = holder
    else
      local liveness = ARGV[7] .. instance .. '}'
      if liveness ~= KEYS[6] and redis.call('EXISTS', liveness) == 0 then dead[#dead + 1] = holder end
    end
  end
end
for i = 13, 12 + deadCount do dead[#dead + 1] = ARGV[i] end
local verdict, ids, dropped = bindPolicy(KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], dead)
for _, holder in ipairs(dropped) do tell(holder, ARGV[9]) end
if verdict ~= 1 then return bindReply(verdict, ids) end
for _, old in ipairs(ids) do tell(old, ARGV[10]) end
local fields = {}
for i = 13 + deadCount, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[2], unpack(fields))
redis.call('EXPIRE', KEYS[2], ARGV[5])
redis.call('SADD', KEYS[3], ARGV[1])
if redis.call('SADD', KEYS[4], ARGV[1]) == 1 then
  redis.call('HINCRBY', KEYS[5], redis.call('HGET', KEYS[2], 'userId'), 1)
end
return bindReply(verdict, ids)
