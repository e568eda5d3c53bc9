-- Replace a live session's noted subscriptions; a session that is gone stays gone (an HSET
-- on a key that is gone would create a bare one).
-- KEYS[1] session:{sessionId} (hash)
-- ARGV[1] the subscriptions (JSON, session-hash.ts)
-- Returns 1 when the record was there, 0 when it is gone.
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'subscriptions', ARGV[1])
  return 1
end
return 0
