-- A session joins a room: a JOIN when it is its user's first session there (exactly once,
-- however many instances try: HSETNX on the session's entry, a count per user).
-- KEYS[1] presence:{room}:sessions (hash sessionId -> stored entry JSON)
-- KEYS[2] presence:{room}:users (hash userId -> the user's sessions in the room)
-- KEYS[3] presence:{room}:members (hash userId -> member JSON)   KEYS[4] presence:{room}:seq
-- ARGV[1] counter TTL (s)  ARGV[2] log length  ARGV[3] log TTL (s)  ARGV[4] '1' to PUBLISH, '0' not
-- ARGV[5] sessionId  ARGV[6] userId  ARGV[7] stored entry JSON  ARGV[8] member JSON
-- ARGV[9] '1' to announce the JOIN, '0' to join silently (a repair of a JOIN told before)
-- On a single Redis (all keys in one place) two more, the fence:
-- KEYS[5] presence:instance:{me}:rooms (the reaper's list of this instance's rooms)
-- KEYS[6] instance:{me} (liveness: must hold ARGV[10] unless ARGV[10] is empty)
-- ARGV[10] the writer's generation  ARGV[11] the room's name (added to KEYS[5])
-- ARGV[10..] (4 keys) or ARGV[12..] (6 keys): channel/envelope pairs (room, then companion),
-- each envelope's body waiting for `seq}`
-- Returns the finished envelopes when the user joined and was announced, -1 when fenced (the
-- writer's generation was reaped or is not live: nothing written), else nil.
--!include presence-announce
local announcing = { seqTtl = ARGV[1], logLength = tonumber(ARGV[2]), logTtl = ARGV[3], publish = ARGV[4] == '1' }
local firstPair = 10
if #KEYS >= 6 then
  -- A join sent by a generation that was reaped meanwhile (a stall, an overload) would add an
  -- entry after the reaper took the instance's entries away: a member nobody removes.
  if ARGV[10] ~= '' and redis.call('GET', KEYS[6]) ~= ARGV[10] then return -1 end
  redis.call('SADD', KEYS[5], ARGV[11])
  firstPair = 12
end
if redis.call('HSETNX', KEYS[1], ARGV[5], ARGV[7]) == 0 then return false end
if redis.call('HINCRBY', KEYS[2], ARGV[6], 1) > 1 then return false end
redis.call('HSET', KEYS[3], ARGV[6], ARGV[8])
if ARGV[9] ~= '1' then return false end
return announce(KEYS[4], firstPair, announcing)
