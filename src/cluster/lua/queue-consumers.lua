-- Tell how many consumers an instance has on a queue. A count > 0 registers them (and makes
-- sure the stream and its group exist); 0 unregisters, and forgets the queue when nothing is
-- left of it anywhere: no entry, no consumer, nothing to redeliver.
-- KEYS[1] queue:{name} (stream)  KEYS[2] :consumers  KEYS[3] :redeliver  KEYS[4] :counts
-- ARGV[1] group  ARGV[2] instance  ARGV[3] consumer count
-- On a single Redis two more keys, the fence: KEYS[5] instance:{me}:queues (the reaper's list
-- of the queues this instance consumes)  KEYS[6] instance:{me} (liveness: must hold ARGV[4]
-- unless ARGV[4] is empty)  ARGV[4] the writer's generation  ARGV[5] the queue's name.
-- A registration by a reaped generation writes nothing (its consumers would count for good,
-- and its list would come back after the reaper removed it).
-- Returns 1 when the queue was forgotten (the caller removes it from the queues set), -1 when
-- fenced, else 0.
if tonumber(ARGV[3]) > 0 then
  if #KEYS >= 6 then
    if ARGV[4] ~= '' and redis.call('GET', KEYS[6]) ~= ARGV[4] then return -1 end
    redis.call('SADD', KEYS[5], ARGV[5])
  end
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
  if redis.call('EXISTS', KEYS[1]) == 0 then
    redis.call('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')
  else
    redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0')
  end
  return 0
end
redis.call('HDEL', KEYS[2], ARGV[2])
if redis.call('XLEN', KEYS[1]) == 0 and redis.call('HLEN', KEYS[2]) == 0 and redis.call('LLEN', KEYS[3]) == 0 then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
  return 1
end
return 0
