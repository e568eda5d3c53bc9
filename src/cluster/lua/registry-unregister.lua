-- A single Redis: remove a session from every index in one script. Whoever deletes the hash
-- gets its fields (exactly one caller when several race), so the disconnect is reported once.
-- KEYS[1] session:{sessionId} (hash)  KEYS[2] sessions:all  KEYS[3] instance:{id}:sessions
-- KEYS[4] instance:{id}:users (hash userId -> sessions of the user on the instance)
-- ARGV[1] sessionId  ARGV[2] user key prefix ('…user:{')
-- Returns the hash's fields (flat), or an empty list when the session was already gone.
local fields = redis.call('HGETALL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[1])
if #fields == 0 then return fields end
local userId = redis.call('HGET', KEYS[1], 'userId')
redis.call('ZREM', ARGV[2] .. userId .. '}', ARGV[1])
redis.call('DEL', KEYS[1])
if redis.call('HINCRBY', KEYS[4], userId, -1) <= 0 then redis.call('HDEL', KEYS[4], userId) end
return fields
