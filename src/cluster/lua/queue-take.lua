-- Take up to ARGV[3] entries of a queue for this instance in one round trip: given-back
-- entries first (claimed from their giver), then new ones (XREADGROUP, never blocking).
-- A given-back entry is claimed only while its giver still holds it (a stale or repeated
-- list entry, or one whose stream entry is gone, is dropped, never delivered twice). This
-- instance's own give-backs are left to the others for ARGV[5] ms while another instance
-- has consumers (a NACK means "someone else"); those stay in front, in order.
-- Bounded: at most ARGV[6] list entries are looked at (popped, and the ones left pushed
-- back), at most ARGV[3] entries claimed or read.
-- KEYS[1] queue:{name}:redeliver  KEYS[2] queue:{name} (stream)  KEYS[3] :consumers
-- ARGV[1] group  ARGV[2] this instance  ARGV[3] count  ARGV[4] now (ms)  ARGV[5] retake own after (ms)
-- ARGV[6] most list entries looked at
-- On a single Redis, the fence: KEYS[4] instance:{me} (liveness: must hold ARGV[7] unless
-- ARGV[7] is empty). A take by a reaped generation would leave entries pending on a consumer
-- whose reap is over: nobody would ever give them back.
-- Returns {entry id, fields, wasDelivered '0'/'1'} per entry; -1 when fenced (nothing taken).
--!include redeliver-entry
if #KEYS >= 4 and ARGV[7] ~= '' and redis.call('GET', KEYS[4]) ~= ARGV[7] then return -1 end
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[1])
  return {}
end
local me = ARGV[2]
local want = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
local retakeOwnMs = tonumber(ARGV[5])
local scanLimit = tonumber(ARGV[6])
local out = {}
if redis.call('LLEN', KEYS[1]) > 0 then
  local others = 0
  local consumers = redis.call('HGETALL', KEYS[3])
  for i = 1, #consumers, 2 do
    if consumers[i] ~= me and tonumber(consumers[i + 1]) > 0 then others = others + 1 end
  end
  local left = {}
  local looked = 0
  while #out < want and looked < scanLimit do
    local popped = redis.call('LPOP', KEYS[1], math.min(want - #out, scanLimit - looked))
    if not popped then break end
    looked = looked + #popped
    for _, entry in ipairs(popped) do
      local id, giver, givenAt, wasDelivered = decodeRedeliverEntry(entry)
      if id == nil then
        -- malformed: dropped
      elseif giver == me and others > 0 and now - tonumber(givenAt) < retakeOwnMs then
        table.insert(left, entry)
      else
        local pending = redis.pcall('XPENDING', KEYS[2], ARGV[1], id, id, 1)
        if type(pending) == 'table' and #pending == 1 and pending[1][2] == giver then
          local claimed = redis.call('XCLAIM', KEYS[2], ARGV[1], me, 0, id)
          if #claimed == 1 and claimed[1] then table.insert(out, {claimed[1][1], claimed[1][2], wasDelivered}) end
        end
      end
    end
  end
  for i = #left, 1, -1 do redis.call('LPUSH', KEYS[1], left[i]) end
end
if #out < want then
  local read = redis.pcall('XREADGROUP', 'GROUP', ARGV[1], me, 'COUNT', want - #out, 'STREAMS', KEYS[2], '>')
  if type(read) == 'table' and read[1] then
    for _, entry in ipairs(read[1][2]) do table.insert(out, {entry[1], entry[2], '0'}) end
  end
end
return out
