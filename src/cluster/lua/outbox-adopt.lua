-- Take a dead instance's outbox over: claim it, append an instance-lost DISCONNECT for each
-- session still open there (after its last events; its id the one every instance spells,
-- session-events.ts instanceLostEventId), and empty the open index, so each is appended once.
-- KEYS[1] backend:{deadId}:events (stream)  KEYS[2] backend:{deadId}:open (hash)
-- KEYS[3] backend:{deadId}:adopter (the claim)
-- ARGV[1] now (epoch ms)  ARGV[2] the claiming instance  ARGV[3] claim TTL (ms)  ARGV[4] deadId
-- Returns -1 if another survivor holds the claim, else how many DISCONNECTs it appended.
local holder = redis.call('GET', KEYS[3])
if holder and holder ~= ARGV[2] then return -1 end
redis.call('SET', KEYS[3], ARGV[2], 'PX', ARGV[3])
local open = redis.call('HGETALL', KEYS[2])
for i = 1, #open, 2 do
  local sid = cjson.encode(open[i])
  local event = '{"id":' .. cjson.encode(ARGV[4] .. ':' .. open[i] .. ':instance-lost') .. ',"type":"DISCONNECT","sessionId":' .. sid ..
    ',' .. open[i + 1] .. ',"reason":"instance-lost","at":' .. ARGV[1] .. ',"instanceId":' .. cjson.encode(ARGV[4]) .. '}'
  redis.call('XADD', KEYS[1], '*', 'e', event)
end
redis.call('DEL', KEYS[2])
return #open / 2
