-- A room's member list with the number of the last decision it includes.
-- KEYS[1] presence:{room}:members (hash userId -> member JSON)  KEYS[2] presence:{room}:seq
-- Returns {seq, member JSON...}. With no counter (no decision for a while, or Redis restarted
-- empty) the list is numbered with the clock in microseconds, where the next decision's number
-- will start: above anything decided before, so a watcher's list read now takes no older
-- event (nor a correction of one, presence-views.ts) for a newer one.
--!include presence-announce
local reply = redis.call('HVALS', KEYS[1])
local seq = redis.call('GET', KEYS[2]) or string.format('%d', clockSeq())
table.insert(reply, 1, seq)
return reply
