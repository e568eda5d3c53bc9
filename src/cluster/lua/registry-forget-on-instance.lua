-- A Redis Cluster, the instance's slot: forget one session of a user there.
-- KEYS[1] instance:{id}:sessions  KEYS[2] instance:{id}:users (hash userId -> sessions)
-- ARGV[1] sessionId  ARGV[2] userId ('' when this caller did not remove the session: the count stays)
-- Returns 1.
if redis.call('SREM', KEYS[1], ARGV[1]) == 1 and ARGV[2] ~= '' then
  if redis.call('HINCRBY', KEYS[2], ARGV[2], -1) <= 0 then redis.call('HDEL', KEYS[2], ARGV[2]) end
end
return 1
