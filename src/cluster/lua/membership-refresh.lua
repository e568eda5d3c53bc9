-- Refresh (or first announce) an instance's membership under its generation.
-- KEYS[1] instance:{id}            liveness: the generation, with a TTL
-- KEYS[2] instance:{id}:reaped     the generation a survivor reaped (fence marker)
-- KEYS[3] instance:{id}:gen        the generation the instance runs now (no TTL; the reap's finish deletes it)
-- KEYS[4] instances                the set of listed instances (single Redis only; absent on a Cluster)
-- ARGV[1] generation (decimal string), ARGV[2] liveness TTL in ms, ARGV[3] instance id
-- Returns 'reaped' (this generation was reaped: write nothing more under it),
-- 'ok' (the key held this generation), 'renewed' (the key was missing: it expired without
-- a reap; written again), or 'orphaned' (the generation key was gone too: a reap of this
-- instance finished long ago — its marker expired — or Redis lost its data, or this is the
-- first announce; the caller tells which).
local reaped = redis.call('GET', KEYS[2])
if reaped and tonumber(reaped) >= tonumber(ARGV[1]) then return 'reaped' end
local hadGeneration = redis.call('EXISTS', KEYS[3]) == 1
local previous = redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'GET')
redis.call('SET', KEYS[3], ARGV[1])
if not previous and not hadGeneration then
  if KEYS[4] then redis.call('SADD', KEYS[4], ARGV[3]) end
  return 'orphaned'
end
if KEYS[4] then redis.call('SADD', KEYS[4], ARGV[3]) end
if previous == ARGV[1] then return 'ok' end
return 'renewed'
