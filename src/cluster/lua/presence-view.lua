-- A room's members as one instance's watchers should list them, read at one decision number:
-- what presence-views.ts compares with what it told its watchers.
-- KEYS[1] presence:{room}:sessions (hash sessionId -> entry JSON), KEYS[2] presence:{room}:seq
-- Returns {seq, sessionId1, entry1, sessionId2, entry2, ...}; seq is '0' when the room's
-- counter is gone (no decision for a while, or Redis restarted empty and none since).
local reply = redis.call('HGETALL', KEYS[1])
table.insert(reply, 1, redis.call('GET', KEYS[2]) or '0')
return reply
