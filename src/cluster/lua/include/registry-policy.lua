-- Shared by the registry scripts (`--!include registry-policy`, never run alone): the
-- single-session policy, decided on a user's sorted set (session ids scored by connectedAt,
-- oldest first). The one Lua copy of the decision; registry-bind.lua (a Cluster) and registry-register.lua (a single
-- Redis) both use it. MemoryRegistry's copy is src/registry/bind-policy.ts.
--
-- bindPolicy(userKey, id, score, max, mode, dead):
--   dead   ids of holders whose instance is dead (judged by the caller): dropped first
--   id     the session to bind (a re-registration of it counts once), connected at `score`
--   max    sessions the user may hold (-1: no limit); mode 'reject' or 'replace'
-- Returns verdict, ids, dropped:
--   1, evicted  bound (id added); evicted: the oldest holders removed to make room (replace)
--   0, holders  refused (reject): the user's sessions that hold the places
--   2, {}       refused (replace): id is older than the holders it would evict (a re-registration that lost)
--   dropped: the dead holders that were in the set.
local function bindPolicy(userKey, id, score, max, mode, dead)
  local dropped = {}
  for _, holder in ipairs(dead) do
    if redis.call('ZREM', userKey, holder) == 1 then dropped[#dropped + 1] = holder end
  end
  redis.call('ZREM', userKey, id)
  local count = redis.call('ZCARD', userKey)
  local evicted = {}
  if max >= 0 and count >= max then
    if mode == 'reject' then return 0, redis.call('ZRANGE', userKey, 0, -1), dropped end
    local evictCount = count + 1 - max
    -- The oldest go; id is among them when fewer than evictCount holders are older.
    if redis.call('ZCOUNT', userKey, '-inf', '(' .. score) < evictCount then return 2, {}, dropped end
    evicted = redis.call('ZRANGE', userKey, 0, evictCount - 1)
    for _, old in ipairs(evicted) do redis.call('ZREM', userKey, old) end
  end
  redis.call('ZADD', userKey, score, id)
  return 1, evicted, dropped
end

-- The reply of a registration: {verdict, ids...}.
local function bindReply(verdict, ids)
  local reply = {verdict}
  for _, id in ipairs(ids) do reply[#reply + 1] = id end
  return reply
end
