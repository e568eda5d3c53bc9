-- Declare an instance dead before its liveness key expires (its connections are gone): a
-- compare-and-delete, so a key the instance refreshed meanwhile is kept.
-- KEYS[1] instance:{id} (liveness)   ARGV[1] the value read before the connections were checked
-- Returns 1 when deleted, 0 when the key changed (the instance is back) or was gone.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
