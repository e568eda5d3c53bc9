-- Add a member to one of the writing instance's own sets, the reaper's lists of what it holds
-- (its sessions, rooms or queues), if the writer's generation is the live one. On a Redis
-- Cluster, where no script may span the liveness key's slot and another's, this is the fence a
-- registration, a room join or a queue consumer passes before it writes anywhere else: both
-- keys carry the instance's hash tag, so they are in one slot. (On a single Redis the whole
-- write is one script that checks the generation itself.)
-- KEYS[1] the instance's set (…instance:{me}:sessions, …presence:instance:{me}:rooms, …instance:{me}:queues)
-- KEYS[2] instance:{me} (liveness: must hold ARGV[1] unless ARGV[1] is empty: a store used without membership)
-- ARGV[1] the writer's generation  ARGV[2] the member
-- Returns -1 when fenced (nothing written), else SADD's reply (1 added, 0 already there).
if ARGV[1] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
return redis.call('SADD', KEYS[1], ARGV[2])
