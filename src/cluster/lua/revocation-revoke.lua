-- Record a logout: tokens issued before revokedAt are refused. A later logout never moves it
-- back; each one extends the key's life (it must outlive every token it refuses).
-- KEYS[1] auth:{userId} (hash: revokedAt, epoch ms)
-- ARGV[1] revokedAt (epoch ms)  ARGV[2] TTL (s)
-- Returns 1.
local current = tonumber(redis.call('HGET', KEYS[1], 'revokedAt') or '0')
if tonumber(ARGV[1]) > current then redis.call('HSET', KEYS[1], 'revokedAt', ARGV[1]) end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
