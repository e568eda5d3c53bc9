// The single-session policy as one decision: given a user's sessions (oldest first) and a
// newcomer, bind it, refuse it, or evict the oldest to make room. MemoryRegistry decides with
// this function; the Redis registry decides with its Lua twin (src/cluster/lua/include/
// registry-policy.lua), line for line the same rule, and test/contracts/registry.test.ts runs
// both against the same cases.

import type { BindPolicy } from './registry';

export type BindDecision<T> =
  | { verdict: 'bound'; /** The oldest holders to remove (mode replace), oldest first. */ evicted: T[] }
  | { verdict: 'refused'; /** mode reject: the user's sessions that hold the places. */ holders: T[] }
  /** mode replace, and the newcomer is older than the holders it would evict (a re-registration): it loses. */
  | { verdict: 'lost' };

/**
 * `holders`: the user's sessions other than the newcomer, oldest first; `isOlderThanNewcomer`
 * tells which connected before it (a newcomer is normally the newest).
 */
export function decideBind<T>(holders: readonly T[], isOlderThanNewcomer: (holder: T) => boolean, policy: BindPolicy): BindDecision<T> {
  const count = holders.length;
  if (count < policy.maxPerUser) return { verdict: 'bound', evicted: [] };
  if (policy.mode === 'reject') return { verdict: 'refused', holders: [...holders] };
  const evictCount = count + 1 - policy.maxPerUser;
  // The oldest go; the newcomer is among them when fewer than evictCount holders are older.
  if (holders.filter(isOlderThanNewcomer).length < evictCount) return { verdict: 'lost' };
  return { verdict: 'bound', evicted: holders.slice(0, evictCount) };
}
