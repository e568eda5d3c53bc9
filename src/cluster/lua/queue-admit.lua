-- Admit a queue against MAX_QUEUES: a listed queue always; a new one while fewer than the
-- limit are listed (it is listed then).
-- KEYS[1] queues (set of every queue)
-- ARGV[1] queue name  ARGV[2] max queues
-- Returns 1 admitted, 0 refused.
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 1 end
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('SADD', KEYS[1], ARGV[1])
return 1
