-- A session leaves a room: a LEAVE when it was its user's last session there (exactly once,
-- however many instances try: HDEL of the session's entry, a count per user).
-- KEYS[1] presence:{room}:sessions  KEYS[2] presence:{room}:users  KEYS[3] presence:{room}:members
-- KEYS[4] presence:{room}:seq
-- ARGV[1] counter TTL (s)  ARGV[2] log length  ARGV[3] log TTL (s)  ARGV[4] '1' to PUBLISH, '0' not
-- ARGV[5] sessionId  ARGV[6] userId
-- ARGV[7..] channel/envelope pairs (room, then companion), each envelope's body waiting for `seq}`
-- Returns the finished envelopes when the user left, 0 when the session had no entry, else nil.
--!include presence-announce
local announcing = { seqTtl = ARGV[1], logLength = tonumber(ARGV[2]), logTtl = ARGV[3], publish = ARGV[4] == '1' }
if redis.call('HDEL', KEYS[1], ARGV[5]) == 0 then return 0 end
if redis.call('HINCRBY', KEYS[2], ARGV[6], -1) > 0 then return false end
redis.call('HDEL', KEYS[2], ARGV[6])
redis.call('HDEL', KEYS[3], ARGV[6])
return announce(KEYS[4], 7, announcing)
