-- A session joins a room: a JOIN when it is its user's first session there (exactly once,
-- however many instances try: HSETNX on the session's entry, a count per user).
-- KEYS[1] presence:{room}:sessions (hash sessionId -> stored entry JSON)
-- KEYS[2] presence:{room}:users (hash userId -> the user's sessions in the room)
-- KEYS[3] presence:{room}:members (hash userId -> member JSON)   KEYS[4] presence:{room}:seq
-- ARGV[1] counter TTL (s)  ARGV[2] log length  ARGV[3] log TTL (s)  ARGV[4] '1' to PUBLISH, '0' not
-- ARGV[5] sessionId  ARGV[6] userId  ARGV[7] stored entry JSON  ARGV[8] member JSON
-- ARGV[9] '1' to announce the JOIN, '0' to join silently (a repair of a JOIN told before)
-- ARGV[10..] channel/envelope pairs (room, then companion), each envelope's body waiting for `seq}`
-- Returns the finished envelopes when the user joined and was announced, else nil.
--!include presence-announce
local announcing = { seqTtl = ARGV[1], logLength = tonumber(ARGV[2]), logTtl = ARGV[3], publish = ARGV[4] == '1' }
if redis.call('HSETNX', KEYS[1], ARGV[5], ARGV[7]) == 0 then return false end
if redis.call('HINCRBY', KEYS[2], ARGV[6], 1) > 1 then return false end
redis.call('HSET', KEYS[3], ARGV[6], ARGV[8])
if ARGV[9] ~= '1' then return false end
return announce(KEYS[4], 10, announcing)
