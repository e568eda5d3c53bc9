-- Give back what a dead (or fenced) instance held of one queue, a batch at a time: every
-- entry in its pending list goes on the redeliver list (marked delivered: a client may have
-- seen it), for the survivors to claim. The last batch also forgets the queue when nothing
-- is left of it anywhere (as the consumers script does when the last consumer leaves).
-- KEYS[1] queue:{name} (stream)  KEYS[2] :redeliver  KEYS[3] :consumers  KEYS[4] :counts
-- ARGV[1] group  ARGV[2] dead instance  ARGV[3] now (ms)  ARGV[4] start ('-' or '(<last id>')  ARGV[5] batch size
-- Returns {given, next start ('' when done), forgotten 1/0}.
--!include redeliver-entry
redis.call('HDEL', KEYS[3], ARGV[2])
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, '', 0} end
local batch = tonumber(ARGV[5])
local p = redis.pcall('XPENDING', KEYS[1], ARGV[1], ARGV[4], '+', batch, ARGV[2])
if type(p) ~= 'table' or p.err then return {0, '', 0} end
for _, e in ipairs(p) do
  redis.call('RPUSH', KEYS[2], encodeRedeliverEntry(e[1], ARGV[2], ARGV[3], '1'))
end
if #p == batch then return {#p, '(' .. p[#p][1], 0} end
if redis.call('XLEN', KEYS[1]) == 0 and redis.call('HLEN', KEYS[3]) == 0 and redis.call('LLEN', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
  return {#p, '', 1}
end
return {#p, '', 0}
