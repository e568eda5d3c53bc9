-- A room's members as one instance's watchers should list them, read at one decision number:
-- what presence-views.ts compares with what it told its watchers.
-- KEYS[1] presence:{room}:sessions (hash sessionId -> entry JSON), KEYS[2] presence:{room}:seq,
-- KEYS[3] presence:{room}:forgotten (hash userId -> reason: LEAVEs Redis forgot, told as corrections)
-- Returns {seq, {sessionId1, entry1, ...}, {userId1, reason1, ...}}; seq is '0' when the
-- room's counter is gone (no decision for a while, or Redis restarted empty and none since).
local seq = redis.call('GET', KEYS[2]) or '0'
return {seq, redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[3])}
