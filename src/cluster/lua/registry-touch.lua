-- Note a live session alive: extend its expiry and stamp lastSeenAt, on a record that still
-- exists only (an HSET on a key that is gone would create a bare one).
-- KEYS[1] session:{sessionId} (hash)
-- ARGV[1] session TTL (s)  ARGV[2] now (epoch ms)
-- Returns 1 when the record was there, 0 when it is gone.
if redis.call('EXPIRE', KEYS[1], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], 'lastSeenAt', ARGV[2])
  return 1
end
return 0
