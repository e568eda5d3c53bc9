-- A LEAVE Redis forgot (it restarted empty while the leave could not be decided): told now
-- unless the user has a session in the room again.
-- KEYS[1] presence:{room}:users  KEYS[2] presence:{room}:seq
-- ARGV[1] counter TTL (s)  ARGV[2] log length  ARGV[3] log TTL (s)  ARGV[4] '1' to PUBLISH, '0' not
-- ARGV[5] userId
-- ARGV[6..] channel/envelope pairs (room, then companion), each envelope's body waiting for `seq}`
-- Returns the finished envelopes when the LEAVE was told, else nil.
--! include presence-announce
local announcing = { seqTtl = ARGV[1], logLength = tonumber(ARGV[2]), logTtl = ARGV[3], publish = ARGV[4] == '1' }
if redis.call('HEXISTS', KEYS[1], ARGV[5]) == 1 then return false end
return announce(KEYS[2], 6, announcing)
