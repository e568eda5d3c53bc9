-- A queue's redeliver list entry: `<entryId>|<giver instance>|<given at ms>|<wasDelivered 0/1>`.
-- The one Lua codec of the format (cluster/redeliver-entry.ts is the TypeScript one;
-- test/cluster/lua.test.ts checks that the two agree). An instance id may hold '|': the
-- fields after it are digits.
local function encodeRedeliverEntry(entryId, giver, givenAtMs, wasDelivered)
  return entryId .. '|' .. giver .. '|' .. givenAtMs .. '|' .. wasDelivered
end

-- Returns entryId, giver, givenAtMs (a string), wasDelivered ('0'/'1'); nil for a malformed entry.
local function decodeRedeliverEntry(entry)
  return string.match(entry, '^([^|]+)|(.+)|(%d+)|([01])$')
end
