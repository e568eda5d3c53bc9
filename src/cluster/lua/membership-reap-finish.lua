-- The end of a reap: forget the reaped generation and the sets it held, unless the instance
-- has joined again under a newer one meanwhile (then its sets are the new generation's and
-- it stays listed: a later death must still be reaped).
-- KEYS[1] instance:{id}:gen, KEYS[2] instance:{id}:reaper (the claim), KEYS[3] instance:{id}:sessions,
-- KEYS[4] instance:{id}:users, KEYS[5] instances (single Redis only)
-- ARGV[1] the generation reaped, ARGV[2] instance id
-- Returns 1 when the instance was forgotten, 0 when it runs a newer generation.
redis.call('DEL', KEYS[2])
local current = redis.call('GET', KEYS[1])
if current and tonumber(current) > tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1], KEYS[3], KEYS[4])
if KEYS[5] then redis.call('SREM', KEYS[5], ARGV[2]) end
return 1
