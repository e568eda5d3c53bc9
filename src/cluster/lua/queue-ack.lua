-- Acknowledge queue entries, each only while this instance still holds it: an entry given
-- back meanwhile (this instance was reaped; a survivor handed the entry to another consumer)
-- belongs to that consumer now, and an ACK from the old holder must not remove it.
-- KEYS[1] queue:{name} (stream)
-- ARGV[1] consumer group, ARGV[2] this instance's consumer name, ARGV[3..] entry ids
-- Returns how many entries were acknowledged and deleted.
local acked = 0
for i = 3, #ARGV do
  local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if pending[1] and pending[1][2] == ARGV[2] then
    redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
    redis.call('XDEL', KEYS[1], ARGV[i])
    acked = acked + 1
  end
end
return acked
