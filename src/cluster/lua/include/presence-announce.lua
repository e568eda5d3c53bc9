-- Shared by the presence scripts (`--!include presence-announce`, never run alone): a room's
-- decision numbers, and telling a decision. The including script builds `announcing` from its ARGV:
--   { seqTtl = seconds a counter outlives its last decision, logLength = events kept per
--     destination, logTtl = seconds a log outlives its last event, publish = true to PUBLISH
--     (a single Redis; on a Cluster the channel is in another slot: the caller SPUBLISHes) }

-- The clock in microseconds: where a missing counter (a new room, or a Redis that restarted
-- empty) starts, so numbers never go back below what a list read before listed (unless a room
-- made more than a million decisions a second on average).
local function clockSeq()
  local now = redis.call('TIME')
  return tonumber(now[1]) * 1000000 + tonumber(now[2])
end

-- The room's next decision number. Room names are the clients' choice: a counter unused for
-- a while goes (it restarts from the clock, above any number it gave).
local function nextSeq(key, announcing)
  if redis.call('EXISTS', key) == 0 then redis.call('SET', key, clockSeq()) end
  local seq = redis.call('INCR', key)
  redis.call('EXPIRE', key, announcing.seqTtl)
  return seq
end

-- The decision under the room's next number. ARGV from `first` on are channel/envelope pairs
-- (the room's, then its companion's); each envelope's body waits for `seq}` to finish it.
-- Each finished envelope is PUBLISHed (announcing.publish), kept in its destination's
-- recent-events log (presence:{room}:log:1 for the room, :log:2 for its companion, in the
-- room's slot: an instance whose pub/sub missed it fills the gap, presence-sequencer.ts),
-- and returned, in order.
local function announce(seqKey, first, announcing)
  local seq = string.format('%d', nextSeq(seqKey, announcing))
  local logBase = string.sub(seqKey, 1, -4) .. 'log:'
  local finished = {}
  for i = first, #ARGV, 2 do
    local envelope = ARGV[i + 1] .. seq .. '}'
    if announcing.publish then redis.call('PUBLISH', ARGV[i], envelope) end
    finished[#finished + 1] = envelope
    local log = logBase .. #finished
    redis.call('RPUSH', log, envelope)
    redis.call('LTRIM', log, -announcing.logLength, -1)
    redis.call('EXPIRE', log, announcing.logTtl)
  end
  return finished
end
