-- The compare-and-set that starts a reap: only an instance whose liveness key is gone is
-- reaped, and the mark names the generation judged dead.
-- KEYS[1] instance:{id} (liveness), KEYS[2] instance:{id}:reaped, KEYS[3] instance:{id}:gen
-- ARGV[1] marker TTL in seconds
-- Returns the generation marked reaped, or false when there is nothing to reap: the
-- instance is alive (its key exists), or it has no generation (a reap of it finished
-- already: a survivor that listed it before that must not reap it twice).
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local generation = redis.call('GET', KEYS[3])
if not generation then return false end
local marked = redis.call('GET', KEYS[2])
if not marked or tonumber(marked) < tonumber(generation) then
  redis.call('SET', KEYS[2], generation, 'EX', ARGV[1])
end
return generation
