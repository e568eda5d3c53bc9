-- A reaper keeps its claim on a reap, and learns whether it still has it: between the phases
-- of a reap (a stall past the claim lets someone else, or the instance itself, take over;
-- the stalled reaper must then stop, not act on the instance's new generation).
-- KEYS[1] instance:{id}:reaper   ARGV[1] the reaper's own instance id, ARGV[2] claim TTL (ms)
-- Returns 1 while the claim is the caller's (extended), 0 once it is not.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
