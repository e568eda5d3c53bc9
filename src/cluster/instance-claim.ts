// The fence on a Redis Cluster (instance-claim.lua), in one place for every store that writes
// for an instance: the registry (its sessions), presence (its rooms) and the queues (those it
// consumes). No script may span the liveness key's slot and another's, so the first write is a
// claim in the instance's own set, which shares the liveness key's hash tag: the writer's
// generation is checked there and a fenced generation writes nothing at all.

import { LuaScript } from './lua';
import type { RedisConnection } from './redis-client';

/** The liveness key and the generation it must hold; undefined: a store used without membership (no check). */
export type ClaimFence = { key: string; generation: string } | undefined;

export class InstanceClaim {
  private readonly script: LuaScript;

  constructor(redis: RedisConnection) {
    this.script = new LuaScript(redis, 'instance-claim', [2]);
  }

  /**
   * Add `member` to `setKey` (one of the instance's own sets) if `fence` is live. `instanceKey`:
   * the instance's liveness key, used when there is no fence (the same slot, nothing checked).
   * 1 added, 0 already there, -1 fenced (nothing written).
   */
  async claim(setKey: string, instanceKey: string, fence: ClaimFence, member: string): Promise<number> {
    return Number(await this.script.run([setKey, fence?.key ?? instanceKey], [fence?.generation ?? '', member]));
  }
}
