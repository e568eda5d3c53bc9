-- A Redis Cluster: the policy decision alone, on the user's slot (the other writes are in
-- other slots; registry-writes-cluster.ts orders them).
-- KEYS[1] user:{userId} (zset: sessionId scored by connectedAt)
-- ARGV[1] sessionId  ARGV[2] connectedAt  ARGV[3] max sessions per user (-1: no limit)
-- ARGV[4] 'reject' | 'replace'  ARGV[5..] ids of holders whose instance is dead (judged by the caller)
-- Returns {1, evicted...} bound; {0, holders...} refused; {2} older than the holders (replace: lost).
--!include registry-policy
local dead = {}
for i = 5, #ARGV do dead[#dead + 1] = ARGV[i] end
local verdict, ids = bindPolicy(KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], dead)
return bindReply(verdict, ids)
